"""The one Session protocol every backend implements, and the check of what a session is given.
Pre- and post-processing live in edgeseg.runtime.prepost."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from edgeseg.errors import InputError
from edgeseg.export.metadata import ModelMeta


@runtime_checkable
class Session(Protocol):
    """``run(batch)`` takes a normalised float32 batch (N×C×H×W, or N×H×W×C for NHWC models; see
    ``edgeseg.runtime.prepost.preprocess``) and returns ``{output name: array}``."""

    backend: str
    precision: str
    meta: ModelMeta

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def check_batch(batch: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """Refuse what the model cannot take, saying what was expected; return a contiguous float32 array
    (uint8 frames for a deploy graph)."""
    if meta.io == "frames":
        return check_frames(batch, meta)
    nhwc = meta.input_layout == "NHWC"
    form = f"N×H×W×{meta.in_channels}" if nhwc else f"N×{meta.in_channels}×H×W"
    if not isinstance(batch, np.ndarray):
        raise InputError(f"input must be a numpy array, got {type(batch).__name__}", f"pass np.ndarray of shape {form}")
    if batch.ndim != 4:
        raise InputError(f"input has shape {batch.shape}, expected {form}",
                         "add the batch axis (image[None]), or build the batch with edgeseg.runtime.preprocess")
    channels = batch.shape[3 if nhwc else 1]
    if channels != meta.in_channels:
        raise InputError(f"input has {channels} channel(s) ({meta.input_layout}) but model '{meta.model}' takes {meta.in_channels}",
                         f"convert the image to {meta.in_channels} channel(s)")
    if batch.dtype not in (np.float32, np.float64, np.float16):
        raise InputError(f"input dtype is {batch.dtype}, expected float32", "normalise the image first (edgeseg.runtime.preprocess)")
    h, w = batch.shape[1:3] if nhwc else batch.shape[2:4]
    if meta.input_size is not None:
        if [h, w] != list(meta.input_size):
            raise InputError(f"input size {h}×{w} is not the model's fixed {meta.input_size[0]}×{meta.input_size[1]}",
                             "resize it (edgeseg.runtime.preprocess does)")
    elif h % meta.size_divisor or w % meta.size_divisor:
        raise InputError(f"input size {h}×{w} is not a multiple of {meta.size_divisor}",
                         "pad it (edgeseg.runtime.preprocess does) or resize it")
    return np.ascontiguousarray(batch, dtype=np.float32)


def check_frames(batch: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """A deploy graph's input: uint8 N×H×W×C frames of any size (the graph normalises, resizes and pads)."""
    form = f"uint8 N×H×W×{meta.in_channels} frames ({meta.frame_order})"
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[3] != meta.in_channels:
        raise InputError(f"input has shape {getattr(batch, 'shape', None)}, deploy graph '{meta.model}' takes {form}",
                         "pass decoded frames as they come (edgeseg.runtime.prepost.to_frame converts a C×H×W image)")
    if batch.dtype != np.uint8:
        raise InputError(f"input dtype is {batch.dtype}, deploy graph '{meta.model}' takes {form}",
                         "pass 8-bit pixels, not normalised floats")
    if min(batch.shape[1:3]) < 1:
        raise InputError(f"input has an empty frame ({batch.shape[1]}×{batch.shape[2]})", "pass frames of at least 1×1 pixel")
    return np.ascontiguousarray(batch)
