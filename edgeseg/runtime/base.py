"""The one Session protocol every backend implements, and the pre/post-processing any edgeseg ONNX
(or model) is run with, driven by its metadata alone."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edgeseg.errors import InputError
from edgeseg.export.metadata import ModelMeta


@runtime_checkable
class Session(Protocol):
    """``run(batch)`` takes a normalised N×C×H×W float32 array and returns ``{output name: array}``."""

    backend: str
    precision: str
    meta: ModelMeta

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def check_batch(batch: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """Refuse what the model cannot take, saying what was expected; return a contiguous float32 array."""
    if not isinstance(batch, np.ndarray):
        raise InputError(f"input must be a numpy array, got {type(batch).__name__}", "pass np.ndarray of shape N×C×H×W")
    if batch.ndim != 4:
        raise InputError(f"input has shape {batch.shape}, expected N×{meta.in_channels}×H×W",
                         "add the batch axis (image[None]) or convert HWC to CHW")
    if batch.shape[1] != meta.in_channels:
        raise InputError(f"input has {batch.shape[1]} channel(s) but model '{meta.model}' takes {meta.in_channels}",
                         f"convert the image to {meta.in_channels} channel(s)")
    if batch.dtype not in (np.float32, np.float64, np.float16):
        raise InputError(f"input dtype is {batch.dtype}, expected float32", "normalise the image first (edgeseg.runtime.preprocess)")
    d = meta.size_divisor
    if batch.shape[2] % d or batch.shape[3] % d:
        raise InputError(f"input size {batch.shape[2]}×{batch.shape[3]} is not a multiple of {d}",
                         "pad it (edgeseg.runtime.preprocess does) or resize it")
    return np.ascontiguousarray(batch, dtype=np.float32)


def preprocess(image: np.ndarray, meta: ModelMeta) -> tuple[np.ndarray, tuple[int, int]]:
    """C×H×W image in [0, 1] -> (1×C×H'×W' normalised, padded to the size divisor; original (H, W))."""
    if image.ndim != 3 or image.shape[0] != meta.in_channels:
        raise InputError(f"image has shape {image.shape}, model '{meta.model}' takes {meta.in_channels}×H×W",
                         f"convert the image to {meta.in_channels} channel(s)")
    mean = np.asarray(meta.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(meta.std, np.float32).reshape(-1, 1, 1)
    x = (image.astype(np.float32) - mean) / std
    h, w = x.shape[1:]
    d = meta.size_divisor
    ph, pw = -h % d, -w % d
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if ph < h and pw < w else "edge")
    return x[None], (h, w)


def labels_from_logits(logits: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """N×K×H×W scores -> N×H×W uint8/int class ids, cropped to ``size`` (undoing preprocess's padding)."""
    labels = logits.argmax(axis=1)
    if size is not None:
        labels = labels[:, : size[0], : size[1]]
    return labels.astype(np.uint8 if logits.shape[1] <= 256 else np.int32)
