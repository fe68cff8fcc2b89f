"""Every pre- and post-processing decision the metadata drives, in one place, for every verb and backend.

Image (C×H×W float32 in [0, 1], RGB or grey, as the data sets and ``load_image`` give it) -> model input:
fixed-size graphs resize (stretch or letterbox) to ``input_size``; channel order; ``pixel_scale``; mean/std;
dynamic-size graphs pad to ``size_divisor``; layout. Model output -> label map at the image's size: layout,
channel check, ``output_stride`` upsampling, undoing the resize or padding, then the ``output_kind`` decision.
Resizes are bilinear with half-pixel centres (PyTorch's ``align_corners=False``) and no antialiasing.
"""
from __future__ import annotations

import math

import numpy as np

from edgeseg.errors import InputError, OnnxFileError
from edgeseg.export.metadata import ModelMeta, check_output_channels


def input_geometry(meta: ModelMeta, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """For an image of ``size`` (H, W): the model input's (H, W) and the top-left part of it the image fills."""
    h, w = size
    if meta.input_size is None:
        d = meta.size_divisor
        return (h + -h % d, w + -w % d), (h, w)
    ih, iw = meta.input_size
    if meta.resize_mode == "stretch":
        return (ih, iw), (ih, iw)
    scale = min(ih / h, iw / w)
    return (ih, iw), (min(ih, max(1, round(h * scale))), min(iw, max(1, round(w * scale))))


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize the last two axes of ``x`` to ``size``: bilinear, half-pixel centres, edges clamped."""
    for axis, n_out in ((x.ndim - 2, size[0]), (x.ndim - 1, size[1])):
        n_in = x.shape[axis]
        if n_in == n_out:
            continue
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        frac = (pos - lo).astype(np.float32).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
        x = np.take(x, lo, axis) * (1 - frac) + np.take(x, hi, axis) * frac
    return x.astype(np.float32, copy=False)


def preprocess(image: np.ndarray, meta: ModelMeta) -> tuple[np.ndarray, tuple[int, int]]:
    """C×H×W image in [0, 1] -> (a batch of one, as the model takes it; the image's (H, W))."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[0] != meta.in_channels:
        raise InputError(f"image has shape {getattr(image, 'shape', None)}, model '{meta.model}' takes {meta.in_channels}×H×W "
                         "in [0, 1]", f"convert the image to {meta.in_channels} channel(s), channels first")
    h, w = image.shape[1:]
    (ih, iw), (ch, cw) = input_geometry(meta, (h, w))
    x = image.astype(np.float32)
    if (ch, cw) != (h, w):
        x = resize_bilinear(x, (ch, cw))
    if meta.channel_order == "BGR":
        x = x[::-1]
    factor = 255 * meta.pixel_scale  # the image holds 8-bit pixels / 255
    if not math.isclose(factor, 1.0):
        x = x * np.float32(factor)
    x = (x - np.asarray(meta.mean, np.float32).reshape(-1, 1, 1)) / np.asarray(meta.std, np.float32).reshape(-1, 1, 1)
    ph, pw = ih - ch, iw - cw
    if ph or pw:
        # letterbox: the mean colour (0 after normalisation); divisor padding: mirrored content, as in training crops
        if meta.input_size is not None:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="constant")
        else:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if ph < ch and pw < cw else "edge")
    if meta.input_layout == "NHWC":
        x = x.transpose(1, 2, 0)
    return np.ascontiguousarray(x[None]), (h, w)


def batch_size_hw(batch: np.ndarray, meta: ModelMeta) -> tuple[int, int]:
    """The spatial (H, W) of a model input batch, whatever its layout."""
    return tuple(batch.shape[1:3] if meta.input_layout == "NHWC" else batch.shape[2:4])


def model_scores(outputs: dict[str, np.ndarray], meta: ModelMeta) -> np.ndarray:
    """A session's logits output as N×C×h×w (softmax scores or sigmoid probabilities), its channels checked."""
    out = outputs[meta.logits_output]
    if out.ndim == 3 and meta.output_kind == "sigmoid_binary":  # N×H×W: one probability map, no channel axis
        out = out[:, None]
    elif out.ndim == 4 and meta.input_layout == "NHWC":
        out = out.transpose(0, 3, 1, 2)
    if out.ndim != 4:
        raise OnnxFileError(f"model '{meta.model}': output '{meta.logits_output}' has shape {out.shape}, expected "
                            f"N×C×H×W ({meta.input_layout})", "point logits_output at the class-score output")
    check_output_channels(meta, out.shape[1], f"model '{meta.model}'")
    return out


def scores_at_image(scores: np.ndarray, meta: ModelMeta, size: tuple[int, int]) -> np.ndarray:
    """N×C×h×w model scores -> N×C×H×W at the image's ``size``: stride upsampling to the input size, then
    the padding cropped off, or the fixed-size resize (and letterbox) undone."""
    (ih, iw), (ch, cw) = input_geometry(meta, size)
    oh, ow = scores.shape[2:]
    if (oh, ow) != (ih, iw):
        s = meta.output_stride
        if s == 1 or oh not in (ih // s, -(-ih // s)) or ow not in (iw // s, -(-iw // s)):
            raise OnnxFileError(f"model '{meta.model}': output '{meta.logits_output}' is {oh}×{ow} for a {ih}×{iw} input, "
                                f"but metadata field 'output_stride' is {s}", "set output_stride to input size / output size")
        scores = resize_bilinear(scores, (ih, iw))
    scores = scores[:, :, :ch, :cw]
    return resize_bilinear(scores, size) if (ch, cw) != tuple(size) else scores


def foreground(scores: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """The sigmoid kinds: N×C×H×W booleans, each channel thresholded."""
    return scores > meta.threshold


def decide(scores: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """N×C×H×W scores -> N×H×W class ids. softmax: argmax. sigmoid_binary: 1 (foreground) where the probability
    exceeds ``threshold``. sigmoid_multilabel: 0 where no channel does, else 1 + the most probable channel above it."""
    if meta.output_kind == "softmax":
        labels = scores.argmax(axis=1)
    elif meta.output_kind == "sigmoid_binary":
        labels = foreground(scores, meta)[:, 0]
    else:
        above = foreground(scores, meta)
        best = np.where(above, scores, -np.inf).argmax(axis=1) + 1
        labels = np.where(above.any(axis=1), best, 0)
    return labels.astype(np.uint8 if meta.num_classes <= 256 else np.int32)


def labels_from_outputs(outputs: dict[str, np.ndarray], meta: ModelMeta, size: tuple[int, int]) -> np.ndarray:
    """A session's outputs for a batch of images of ``size`` (from ``preprocess``) -> N×H×W class ids."""
    return decide(scores_at_image(model_scores(outputs, meta), meta, size), meta)
