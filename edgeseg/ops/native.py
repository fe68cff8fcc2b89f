"""``impl="native"``: the ops run by the compiled CPU launchers (``libedgeseg_cpu.so``, built by
scripts/build_plugins.sh), which share their arithmetic with the CUDA kernels. Forward only (no grad)."""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from edgeseg.errors import BackendError

_MAX_RANK = 8


class _Tensor(ctypes.Structure):
    """``es_tensor`` of plugins/cpu/edgeseg_cpu.h: data pointer, rank, dims."""
    _fields_ = [("data", ctypes.c_void_p), ("rank", ctypes.c_int32), ("dims", ctypes.c_int64 * _MAX_RANK)]


def plugin_dir() -> Path:
    """Where the plugin libraries are: ``$EDGESEG_PLUGIN_DIR``, else ``build/plugins`` of this checkout."""
    return Path(os.environ.get("EDGESEG_PLUGIN_DIR") or Path(__file__).resolve().parents[2] / "build" / "plugins")


def library_path(name: str) -> Path:
    path = plugin_dir() / name
    if not path.is_file():
        raise BackendError(f"the plugin library {path} is missing",
                           "build it with scripts/build_plugins.sh (or point EDGESEG_PLUGIN_DIR at its folder)")
    return path


@functools.lru_cache(maxsize=None)
def _lib() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path("libedgeseg_cpu.so")))
    lib.es_last_error.restype = ctypes.c_char_p
    return lib


def _f32(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)


def _i32(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.int32)


def _t(a: np.ndarray | None) -> _Tensor:
    """An input (or an allocated output) as the launchers see it; None: an absent optional input."""
    if a is None:
        return _Tensor(None, 1, (ctypes.c_int64 * _MAX_RANK)())
    if a.ndim > _MAX_RANK:
        raise ValueError(f"a tensor of rank {a.ndim} (at most {_MAX_RANK})")
    t = _Tensor(a.ctypes.data if a.size else None, a.ndim, (ctypes.c_int64 * _MAX_RANK)(*a.shape))
    t._array = a  # the launcher reads through the pointer: keep the array alive as long as its view
    return t


def _run(fn: str, args: list, outputs: list[np.dtype]) -> list[np.ndarray]:
    """Calls launcher ``fn`` twice: once to validate and learn the output shapes (query mode), once to
    fill outputs allocated to exactly those shapes. A refusal raises ValueError with the launcher's message."""
    lib = _lib()
    outs = [_Tensor() for _ in outputs]
    call = getattr(lib, fn)
    if call(*args, *[ctypes.byref(o) for o in outs]) != 0:
        raise ValueError(lib.es_last_error().decode())
    arrays = [np.zeros(tuple(o.dims[: o.rank]), dtype) for o, dtype in zip(outs, outputs)]
    filled = [_t(a) for a in arrays]
    if any(a.size == 0 for a in arrays):
        return arrays
    if call(*args, *[ctypes.byref(o) for o in filled]) != 0:
        raise ValueError(lib.es_last_error().decode())
    return arrays


def _back(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(a).to(device=like.device, dtype=like.dtype if a.dtype == np.float32 else torch.int32)


def _boxes_and_batch(rois: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """torchvision's K×5 RoIs -> boxes K×4 and int32 batch indices (truncated as torchvision does; a
    non-finite or out-of-int32 index becomes -1: the launcher gives that RoI zeros)."""
    r = _f32(rois)
    if r.ndim != 2 or r.shape[1] != 5:
        raise ValueError(f"rois must be K×5 (batch index, x1, y1, x2, y2), got {tuple(r.shape)}")
    b = r[:, 0].astype(np.float64)
    ok = np.isfinite(b) & (b > -2**31) & (b < 2**31)
    return np.ascontiguousarray(r[:, 1:]), np.where(ok, np.trunc(np.where(ok, b, 0)), -1).astype(np.int32)


def roi_align(input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int,
              aligned: bool) -> Tensor:
    x = _f32(input)
    boxes, batch = _boxes_and_batch(rois)
    arrays = (x, boxes, batch)
    (out,) = _run("es_roi_align", [ctypes.byref(_t(a)) for a in arrays] + [
        *output_size, ctypes.c_float(spatial_scale), sampling_ratio, int(aligned)], [np.float32])
    return _back(out, input)


def multilevel_roi_align(features: Sequence[Tensor], rois: Tensor, output_size: tuple[int, int],
                         spatial_scales: Sequence[float], sampling_ratio: int, aligned: bool, canonical_scale: float,
                         canonical_level: int, first_level: int) -> Tensor:
    feats = [_f32(f) for f in features]
    boxes, batch = _boxes_and_batch(rois)
    levels = len(feats)
    feat_views = (_Tensor * max(levels, 1))(*[_t(f) for f in feats])
    scales = np.asarray(spatial_scales, np.float32)
    (out,) = _run("es_multilevel_roi_align", [
        ctypes.byref(_t(boxes)), ctypes.byref(_t(batch)), feat_views, levels, *output_size,
        scales.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), sampling_ratio, int(aligned),
        ctypes.c_float(canonical_scale), canonical_level, first_level], [np.float32])
    return _back(out, features[0])


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation,
                  mask: Tensor | None) -> Tensor:
    x, o, wt = _f32(input), _f32(offset), _f32(weight)
    m = None if mask is None else _f32(mask)
    b = None if bias is None else _f32(bias)
    groups = x.shape[1] // wt.shape[1] if wt.ndim == 4 and x.ndim == 4 and wt.shape[1] else 1
    kk = wt.shape[2] * wt.shape[3] if wt.ndim == 4 else 1
    og = o.shape[1] // (2 * kk) if o.ndim == 4 and kk else 1
    views = [_t(a) for a in (x, wt, o, b, m)]
    (out,) = _run("es_deform_conv2d", [ctypes.byref(v) for v in views] + [
        *stride, *padding, *dilation, max(groups, 1), max(og, 1)], [np.float32])
    return _back(out, input)


def dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel, stride, padding, dilation, group: int,
          offset_scale: float) -> Tensor:
    views = [_t(_f32(t)) for t in (input, offset, mask)]
    (out,) = _run("es_dcnv3", [ctypes.byref(v) for v in views] + [
        *kernel, *stride, *padding, *dilation, group, ctypes.c_float(offset_scale)], [np.float32])
    return _back(out, input)


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float) -> Tensor:
    m, b = _f32(masks), _f32(boxes)
    image = _Tensor(None, 2, (ctypes.c_int64 * _MAX_RANK)(*image_size))
    (out,) = _run("es_paste_masks", [ctypes.byref(_t(m)), ctypes.byref(_t(b)), ctypes.byref(image),
                                     ctypes.c_float(threshold)], [np.float32])
    return _back(out, masks)


def panoptic_paste(semantic: Tensor, masks: Tensor, scores: Tensor, classes: Tensor, num_classes: int,
                   num_thing_classes: int, overlap_threshold: float, min_stuff_area: int,
                   score_threshold: float) -> tuple[Tensor, Tensor]:
    views = [_t(_i32(semantic)), _t(_f32(masks)), _t(_f32(scores)), _t(_i32(classes))]
    ids, table = _run("es_panoptic_paste", [ctypes.byref(v) for v in views] + [
        num_classes, num_thing_classes, ctypes.c_float(overlap_threshold), ctypes.c_int64(min_stuff_area),
        ctypes.c_float(score_threshold)], [np.int32, np.float32])
    return torch.from_numpy(ids), torch.from_numpy(table)


def panoptic_merge(semantic: Tensor, masks: Tensor, boxes: Tensor, scores: Tensor, classes: Tensor, mask_rule: int,
                   num_classes: int, num_thing_classes: int, overlap_threshold: float, min_stuff_area: int,
                   score_threshold: float) -> tuple[Tensor, Tensor]:
    views = [_t(_i32(semantic)), _t(_f32(masks)), _t(_f32(boxes)), _t(_f32(scores)), _t(_i32(classes))]
    ids, table = _run("es_panoptic_merge", [ctypes.byref(v) for v in views] + [
        mask_rule, num_classes, num_thing_classes, ctypes.c_float(overlap_threshold), ctypes.c_int64(min_stuff_area),
        ctypes.c_float(score_threshold)], [np.int32, np.float32])
    return torch.from_numpy(ids), torch.from_numpy(table)
