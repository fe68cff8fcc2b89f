"""Deterministic procedural scenes: "stuff" regions (bands of texture) and "thing" instances
(discs and boxes) with instance ids. Any size, any number of classes, same output for the same seed.

Classes 0..n_stuff-1 are stuff, the rest are things (``info.thing_classes``; ``ds.panoptic(i)`` gives the
panoptic ground truth: one segment per stuff class present, one per visible thing instance); each class has its own colour and texture
frequency, so the task is learnable but not trivial (noise, overlaps, random layouts).
"""
from __future__ import annotations

import numpy as np

from edgeseg import budgets
from edgeseg.data.base import DatasetInfo, SegDataset
from edgeseg.errors import DataError


def synthetic_info(num_classes: int) -> DatasetInfo:
    return DatasetInfo(
        name="synthetic",
        class_names=tuple(("stuff" if c < n_stuff(num_classes) else "thing") + f"_{c}" for c in range(num_classes)),
        in_channels=3,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        thing_classes=tuple(range(n_stuff(num_classes), num_classes)),
    )


def n_stuff(num_classes: int) -> int:
    return max(1, num_classes // 2)


def make_scene(seed: int, height: int, width: int, num_classes: int, max_things: int = 6):
    """One scene: image (3×H×W float32 in [0, 1]), semantic mask (H×W int64), instance ids (H×W int64)."""
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(1234 + num_classes).uniform(0.1, 0.9, size=(num_classes, 3))
    freq = 0.05 + 0.35 * np.arange(num_classes) / max(num_classes - 1, 1)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ns = n_stuff(num_classes)
    # Stuff: the scene is cut into bands along a random direction.
    angle = rng.uniform(0, np.pi)
    proj = np.cos(angle) * xx + np.sin(angle) * yy
    cuts = np.sort(rng.uniform(proj.min(), proj.max(), size=rng.integers(1, 4)))
    semantic = rng.integers(0, ns, size=len(cuts) + 1)[np.searchsorted(cuts, proj)]
    instances = np.zeros((height, width), np.int64)
    if num_classes > ns:
        for inst_id in range(1, rng.integers(1, max_things + 1) + 1):
            cls = rng.integers(ns, num_classes)
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(0.05, 0.2) * min(height, width)
            if rng.random() < 0.5:
                inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            else:
                inside = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * rng.uniform(0.5, 1.5))
            semantic = np.where(inside, cls, semantic)
            instances = np.where(inside, inst_id, instances)
    colour = palette[semantic].transpose(2, 0, 1)
    texture = 0.15 * np.sin(freq[semantic] * (xx + yy) + rng.uniform(0, 6))
    image = colour + texture[None] + rng.normal(0, 0.05, size=(3, height, width))
    return np.clip(image, 0, 1).astype(np.float32), semantic.astype(np.int64), instances


def synthetic(split: str = "train", num_images: int = 32, size: tuple[int, int] = (128, 128),
              num_classes: int = 4, seed: int = 0, transform=None) -> SegDataset:
    if num_classes < 2:
        raise DataError(f"synthetic needs at least 2 classes, got {num_classes}", "pass num_classes >= 2")
    h, w = size
    # kept: float RGB, classes, instance ids; while a scene is drawn: about 120 bytes a pixel of float64 temporaries
    budgets.check("bytes", num_images * h * w * 28 + h * w * 120, f"synthetic data set of {num_images} {w}×{h} images")
    base = seed * 1_000_003 + (0 if split == "train" else 500_009)
    scenes = [make_scene(base + i, size[0], size[1], num_classes) for i in range(num_images)]
    ds = SegDataset(synthetic_info(num_classes), [s[0] for s in scenes], [s[1] for s in scenes], transform)
    ds.instances = [s[2] for s in scenes]
    return ds
