"""The U-Net paper's pixel weight map (eq. 2):

    w(x) = w_c(x) + w0 · exp(-(d1(x) + d2(x))² / (2σ²))

w_c balances class frequencies, d1 and d2 are the distances to the border of the nearest and the
second nearest object; w0 = 10 and σ = 5 pixels as in the paper. Objects are the given instance ids,
or the connected components of each foreground class where a data set has no instance ids.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from edgeseg.data.base import IGNORE_INDEX


def class_balance(masks: list[np.ndarray], num_classes: int) -> np.ndarray:
    """Per-class weights proportional to inverse frequency, mean 1 over the labelled pixels."""
    counts = np.zeros(num_classes, np.float64)
    for m in masks:
        counts += np.bincount(m[m != IGNORE_INDEX].ravel(), minlength=num_classes)[:num_classes]
    freq = counts / max(counts.sum(), 1)
    w = np.where(freq > 0, 1.0 / np.maximum(freq, 1e-12), 0.0)
    return (w / (w * freq).sum()).astype(np.float32)


def border_term(objects: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    ids = [i for i in np.unique(objects) if i != 0]
    if len(ids) < 2:
        return np.zeros(objects.shape, np.float32)
    dists = np.stack([ndimage.distance_transform_edt(objects != i) for i in ids])
    dists.partition(1, axis=0)
    d1, d2 = dists[0], dists[1]
    return (w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))).astype(np.float32)


def unet_weight_map(mask: np.ndarray, balance: np.ndarray, instances: np.ndarray | None = None) -> np.ndarray:
    wc = np.where(mask == IGNORE_INDEX, 0.0, balance[np.clip(mask, 0, len(balance) - 1)]).astype(np.float32)
    if instances is None:
        instances = np.zeros(mask.shape, np.int64)
        for c in np.unique(mask):
            if c in (0, IGNORE_INDEX):
                continue
            labelled, n = ndimage.label(mask == c)
            instances = np.where(labelled > 0, labelled + instances.max(), instances)
    return wc + border_term(instances)
