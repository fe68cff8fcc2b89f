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

_F = ctypes.POINTER(ctypes.c_float)
_I32 = ctypes.POINTER(ctypes.c_int32)


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


def _ptr(a: np.ndarray | None):
    if a is None:
        return None
    return a.ctypes.data_as(_I32 if a.dtype == np.int32 else _F)


def _call(fn: str, *args) -> None:
    lib = _lib()
    if getattr(lib, fn)(*args) != 0:
        raise ValueError(lib.es_last_error().decode())


def _back(a: np.ndarray, like: Tensor) -> Tensor:
    return torch.from_numpy(a).to(device=like.device, dtype=like.dtype if a.dtype == np.float32 else torch.int32)


def roi_align(input: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int,
              aligned: bool) -> Tensor:
    x, r = _f32(input), _f32(rois)
    n, c, h, w = x.shape
    out = np.zeros((r.shape[0], c, *output_size), np.float32)
    _call("es_roi_align", _ptr(x), n, c, h, w, _ptr(r), r.shape[0], *output_size, ctypes.c_float(spatial_scale),
          sampling_ratio, int(aligned), _ptr(out))
    return _back(out, input)


def multilevel_roi_align(features: Sequence[Tensor], rois: Tensor, output_size: tuple[int, int],
                         spatial_scales: Sequence[float], sampling_ratio: int, aligned: bool, canonical_scale: float,
                         canonical_level: int, first_level: int) -> Tensor:
    feats = [_f32(f) for f in features]
    r = _f32(rois)
    n, c = feats[0].shape[:2]
    levels = len(feats)
    ptrs = (_F * levels)(*[_ptr(f) for f in feats])
    hs = (ctypes.c_int * levels)(*[f.shape[2] for f in feats])
    ws = (ctypes.c_int * levels)(*[f.shape[3] for f in feats])
    scales = np.asarray(spatial_scales, np.float32)
    out = np.zeros((r.shape[0], c, *output_size), np.float32)
    _call("es_multilevel_roi_align", ptrs, hs, ws, levels, n, c, _ptr(r), r.shape[0], *output_size, _ptr(scales),
          sampling_ratio, int(aligned), ctypes.c_float(canonical_scale), canonical_level, first_level, _ptr(out))
    return _back(out, features[0])


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, stride, padding, dilation,
                  mask: Tensor | None) -> Tensor:
    x, o, wt = _f32(input), _f32(offset), _f32(weight)
    m = None if mask is None else _f32(mask)
    b = None if bias is None else _f32(bias)
    n, cin, h, w = x.shape
    cout, cpg, kh, kw = wt.shape
    og = o.shape[1] // (2 * kh * kw)
    out = np.zeros((n, cout, o.shape[2], o.shape[3]), np.float32)
    _call("es_deform_conv2d", _ptr(x), n, cin, h, w, _ptr(wt), cout, kh, kw, _ptr(o), _ptr(m), _ptr(b), *stride,
          *padding, *dilation, cin // cpg, og, _ptr(out))
    return _back(out, input)


def dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel, stride, padding, dilation, group: int,
          offset_scale: float) -> Tensor:
    x, o, m = _f32(input), _f32(offset), _f32(mask)
    n, h, w, c = x.shape
    out = np.zeros((n, o.shape[1], o.shape[2], c), np.float32)
    _call("es_dcnv3", _ptr(x), n, h, w, c, _ptr(o), _ptr(m), *kernel, *stride, *padding, *dilation, group,
          ctypes.c_float(offset_scale), _ptr(out))
    return _back(out, input)


def paste_masks(masks: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float) -> Tensor:
    m, b = _f32(masks), _f32(boxes)
    r, mh, mw = m.shape
    out = np.zeros((r, *image_size), np.float32)
    _call("es_paste_masks", _ptr(m), r, mh, mw, _ptr(b), *image_size, ctypes.c_float(threshold), _ptr(out))
    return _back(out, masks)


def panoptic_paste(semantic: Tensor, masks: Tensor, scores: Tensor, classes: Tensor, num_classes: int,
                   num_thing_classes: int, overlap_threshold: float, min_stuff_area: int,
                   score_threshold: float) -> tuple[Tensor, Tensor]:
    sem = np.ascontiguousarray(semantic.cpu().numpy(), np.int32)
    m, s = _f32(masks), _f32(scores)
    cls = np.ascontiguousarray(classes.cpu().numpy(), np.int32)
    h, w = sem.shape
    r = m.shape[0]
    ids = np.zeros((h, w), np.int32)
    table = np.zeros((r + num_classes - num_thing_classes, 5), np.float32)
    _call("es_panoptic_paste", _ptr(sem), h, w, _ptr(m), _ptr(s), _ptr(cls), r, num_classes, num_thing_classes,
          ctypes.c_float(overlap_threshold), ctypes.c_int64(min_stuff_area), ctypes.c_float(score_threshold),
          _ptr(ids), _ptr(table))
    return torch.from_numpy(ids), torch.from_numpy(table)
