"""Every pre- and post-processing decision the metadata drives, in one place, for every verb and backend.

Image (C×H×W float32 in [0, 1], RGB or grey, as the data sets and ``load_image`` give it) -> model input:
fixed-size graphs resize (stretch or letterbox) to ``input_size``; channel order; ``pixel_scale``; mean/std;
dynamic-size graphs pad to ``size_divisor``; layout. Model output -> label map at the image's size: layout,
channel check, ``output_stride`` upsampling, undoing the resize or padding, then the ``output_kind`` decision.
Resizes are bilinear with half-pixel centres (PyTorch's ``align_corners=False``) and no antialiasing.
"""
from __future__ import annotations

import math
import time

import numpy as np

from edgeseg import budgets
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


def run_bytes(meta: ModelMeta, size: tuple[int, int]) -> int:
    """What one image's run at input ``size`` (H, W) allocates, estimated before it is made: 20 float tensors as wide
    as the input and the scores together (pre-processing copies, activations, scores, labels, drawing: measured,
    the smallest U-Net with 1 input and 2 output channels takes about 240 bytes a pixel end to end); for detectors
    also the proposals' pooled features (P×256×7×7), the detections' mask features (D×256×28×28) and D full-size
    masks (probabilities, pasted, kept)."""
    pixels = size[0] * size[1]
    total = 20 * 4 * pixels * (meta.in_channels + meta.output_channels)
    if meta.task != "semantic":
        # the larger of what the metadata and the model's config say: either may be what the graph holds
        proposals, d = (v if isinstance(v, int) else 0 for v in (meta.config.get("proposals"), meta.config.get("max_detections")))
        proposals, d = max(proposals, 1000), max(d, meta.max_detections, 1)
        total += 12 * d * pixels + 8 * proposals * 256 * 49 + 8 * d * 256 * 28 * 28
    return total


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
    budgets.check("bytes", run_bytes(meta, (ih, iw)), f"model '{meta.model}' on a {w}×{h} image (as a {iw}×{ih} input)",
                  InputError)  # before the resize, the padding and the run
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
        # (Mask R-CNN pads itself with zeros, as torchvision does, and declares size_divisor 1: nothing is padded here)
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


# --- frames: one image in, its decisions out, whichever I/O form the graph has -----------------------------

def to_frame(image: np.ndarray) -> np.ndarray:
    """C×H×W image in [0, 1] -> H×W×C uint8 frame, as a camera or decoder gives it (pixels rounded)."""
    return np.ascontiguousarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0))


def from_frame(frame: np.ndarray) -> np.ndarray:
    """H×W×C uint8 frame -> C×H×W image in [0, 1] (the float contract's input)."""
    return np.ascontiguousarray(frame.transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def model_input(image: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """A C×H×W image in [0, 1] as a batch of one the graph takes: normalised and padded for the float contract,
    a uint8 frame (in ``frame_order``) for a deploy graph."""
    if meta.io == "frames":
        frame = to_frame(image)
        return (frame[..., ::-1] if meta.frame_order == "BGR" else frame)[None].copy()
    return preprocess(image, meta)[0]


def predict(session, image: np.ndarray, masks: bool = False, timings: dict | None = None) -> dict[str, np.ndarray]:
    """One image's decisions at its own size, from a float-contract graph or a deploy graph alike.

    ``image``: an H×W×C uint8 frame (channels in a deploy graph's ``frame_order``, else RGB) or a C×H×W float
    image in [0, 1]. Returns, by task:
    semantic ``labels`` H×W; instance ``boxes`` R×4, ``scores`` R, ``labels`` R, ``instance_map`` H×W (pixel = 1 +
    the highest-scoring detection whose mask covers it, 0 where none does) and, with ``masks``, ``masks`` R×H×W
    probabilities; panoptic ``panoptic`` H×W ids, ``segments`` S×5 table and ``semantic`` H×W labels.
    ``timings``: filled with ``pre_ms``, ``run_ms``, ``post_ms`` and the model's ``output_bytes`` (the host's share
    of a frame, as the stream benchmark reports it)."""
    meta = session.meta
    frame = image.dtype == np.uint8
    if frame and (image.ndim != 3 or image.shape[2] != meta.in_channels):
        raise InputError(f"frame has shape {image.shape}, model '{meta.model}' takes H×W×{meta.in_channels} uint8",
                         f"convert the frame to {meta.in_channels} channel(s), channels last")
    t0 = time.perf_counter()
    if meta.io == "frames":
        x, size = (image[None] if frame else model_input(image, meta)), None
    else:
        x, size = preprocess(from_frame(image) if frame else image, meta)
    t1 = time.perf_counter()
    out = session.run(x)
    t2 = time.perf_counter()
    if meta.io == "frames":
        result = _decode_frames_outputs(out, meta, out[_FRAME_SIZE_OUTPUT[meta.task]].shape[1:3], masks)
    else:
        result = _decode_float_outputs(out, meta, size, masks)
    if timings is not None:
        timings.update(pre_ms=1e3 * (t1 - t0), run_ms=1e3 * (t2 - t1), post_ms=1e3 * (time.perf_counter() - t2),
                       output_bytes=sum(v.nbytes for v in out.values()))
    return result


def _decode_float_outputs(out: dict[str, np.ndarray], meta: ModelMeta, size: tuple[int, int], masks: bool) -> dict:
    if meta.task == "semantic":
        return {"labels": labels_from_outputs(out, meta, size)[0]}
    h, w = size
    if meta.task == "instance":
        from edgeseg.metrics.instance import detections

        found = detections(out, 0, size)
        result = {k: found[k] for k in ("boxes", "scores", "labels")}
        result["instance_map"] = instance_map(found["masks"], meta.max_detections)
        if masks:
            result["masks"] = found["masks"]
        return result
    return {"panoptic": out["panoptic"][0, :h, :w], "segments": out["segments"][0],
            "semantic": out["semantic_logits"][0, :, :h, :w].argmax(0).astype(label_dtype(meta.num_classes))}


_FRAME_SIZE_OUTPUT = {"semantic": "labels", "instance": "instance_map", "panoptic": "panoptic"}


def label_dtype(count: int) -> type:
    """The smallest dtype every runtime passes for ids 0..count (uint8, else int32; TensorRT has no uint16)."""
    return np.uint8 if count <= 255 else np.int32


def instance_map(masks: np.ndarray, max_detections: int, threshold: float = 0.5) -> np.ndarray:
    """R×H×W mask probabilities in decreasing score -> H×W ids: 1 + the first (highest-scoring) mask ≥ ``threshold``
    covering the pixel, 0 where none does. The deploy graph computes the same map in the graph."""
    ids = np.zeros(masks.shape[1:], label_dtype(max_detections))
    if len(masks):
        covered = masks >= threshold
        ids[...] = np.where(covered.any(0), covered.argmax(0) + 1, 0)
    return ids


def _decode_frames_outputs(out: dict[str, np.ndarray], meta: ModelMeta, size: tuple[int, int], masks: bool) -> dict:
    if meta.task == "semantic":
        return {"labels": out["labels"][0]}
    if meta.task == "panoptic":
        return {"panoptic": out["panoptic"][0], "segments": out["segments"][0], "semantic": out["semantic"][0]}
    k = int(out["num_detections"][0])
    h, w = size
    boxes = out["boxes"][0, :k]
    result = {"boxes": np.clip(boxes, 0, [w, h, w, h]).astype(boxes.dtype), "scores": out["scores"][0, :k],
              "labels": out["labels"][0, :k], "instance_map": out["instance_map"][0]}
    if masks:  # pasted from the graph's boxes, as the float contract pastes
        result["masks"] = paste_mask_probs(out["mask_probs"][0, :k], boxes, size)
    return result


def paste_mask_probs(mask_probs: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A deploy graph's mask-head probabilities (R×M×M) pasted into their boxes at ``size``: R×H×W probabilities,
    by the same arithmetic as the float contract's in-graph paste (edgeseg.ops.paste_masks)."""
    import torch

    from edgeseg.ops import paste_masks

    if not len(mask_probs):
        return np.zeros((0, *size), np.float32)
    with torch.no_grad():
        return paste_masks(torch.from_numpy(np.ascontiguousarray(mask_probs, np.float32)),
                           torch.from_numpy(np.ascontiguousarray(boxes, np.float32)), tuple(size), threshold=-1).numpy()
