"""RoIAlign (torchvision's signature and semantics, average mode) and its FPN multi-level form.

The reference is exact and differentiable: RoIAlign samples a regular grid inside each bin, and
bilinear interpolation on a regular grid is separable, so each RoI's output is ``A @ F @ Bᵀ`` with
``A`` (bins × H) and ``B`` (bins × W) holding the summed bilinear weights of the bin's sample rows and
columns. Cost grows with K·C·H·W: it is the oracle, not a fast path.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torchvision  # noqa: F401  (imported before any export starts, so the ONNX exporter registers its ops)
from torch import Tensor

from edgeseg.ops.export import emitting_plugin, plugin_node


# Samples per bin axis are capped (plugins/include/edgeseg/roi_align.h kMaxRoISamples): torchvision's
# adaptive count grows without bound with the box.
MAX_ROI_SAMPLES = 64


def check_roi_attributes(oh: int, ow: int, sampling_ratio: int, scales: Sequence[float], max_scale: float) -> None:
    """The node spec's ranges (plugins/include/edgeseg/validate.h), the same refusals as the launchers."""
    if not (1 <= oh <= 1024 and 1 <= ow <= 1024):
        raise ValueError(f"output size {oh}×{ow} is outside [1, 1024]")
    if not -1 <= sampling_ratio <= MAX_ROI_SAMPLES:
        raise ValueError(f"sampling_ratio = {sampling_ratio} is outside [-1, {MAX_ROI_SAMPLES}]")
    for s in scales:
        if not 1e-6 <= s <= max_scale:  # NaN fails too
            raise ValueError(f"spatial_scale = {s} is outside [1e-06, {max_scale:g}]")


def as_rois(boxes: Tensor | Sequence[Tensor]) -> Tensor:
    """torchvision's two box forms -> K×5 (batch index, x1, y1, x2, y2)."""
    if isinstance(boxes, Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be K×5 (batch index, x1, y1, x2, y2), got {tuple(boxes.shape)}")
        return boxes
    parts = [torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)]
    return torch.cat(parts) if parts else torch.zeros(0, 5)


def _axis_weights(start: Tensor, size: Tensor, bins: int, grid: Tensor, length: int) -> Tensor:
    """K×bins×length: the bilinear weights of every bin's samples along one axis, summed per bin.

    ``start``/``size``: K, the RoI along this axis; ``grid``: K samples per bin (0 = none)."""
    k = start.shape[0]
    g_max = int(grid.max().item()) if k else 0
    g_max = max(g_max, 1)
    bin_size = size / bins
    i = torch.arange(g_max, dtype=start.dtype, device=start.device)
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    gridf = grid.to(start.dtype).clamp(min=1)
    pos = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]
           + (i[None, None, :] + 0.5) * (bin_size / gridf)[:, None, None])  # K×bins×G
    used = (i[None, None, :] < grid[:, None, None]) & (pos >= -1.0) & (pos <= length)
    pos = pos.clamp(min=0)
    low = pos.floor().clamp(max=length - 1)
    at_edge = low >= length - 1
    pos = torch.where(at_edge, low, pos)
    frac = pos - low
    low_i = low.long()
    high_i = torch.where(at_edge, low_i, low_i + 1)
    w_low = (1 - frac) * used
    w_high = frac * used
    out = torch.zeros(k, bins, length, dtype=start.dtype, device=start.device)
    out = out.scatter_add(2, low_i, w_low).scatter_add(2, high_i, w_high)
    return out


def roi_align(input: Tensor, boxes: Tensor | Sequence[Tensor], output_size: int | tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False, impl: str = "torch") -> Tensor:
    """K×C×oh×ow features pooled from ``input`` (N×C×H×W) inside ``boxes`` (K×5, or a list of L×4 per image)."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    check_roi_attributes(oh, ow, sampling_ratio, [spatial_scale], 1e4)
    rois = as_rois(boxes).to(input.dtype)
    if impl == "native":
        from edgeseg.ops import native

        return native.roi_align(input, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
    if impl != "torch":
        raise ValueError(f"unknown impl '{impl}'; use 'torch' or 'native'")
    if torch.onnx.is_in_onnx_export():  # torchvision's op exports to ONNX RoiAlign; surgery makes it a plugin
        return torchvision.ops.roi_align(input, rois, (oh, ow), spatial_scale, sampling_ratio, aligned)
    n, c, h, w = input.shape
    k = rois.shape[0]
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, i] * spatial_scale - offset for i in range(1, 5))
    rw, rh = x2 - x1, y2 - y1
    # The math core's rules (roi_align.h): a RoI with a non-finite coordinate, or a batch index outside
    # [0, N), gives zeros; samples per bin axis are capped at MAX_ROI_SAMPLES.
    batch_f = rois[:, 0]
    valid = (torch.isfinite(x1) & torch.isfinite(y1) & torch.isfinite(rw) & torch.isfinite(rh)
             & torch.isfinite(batch_f) & (batch_f > -1) & (batch_f < n))
    zero = torch.zeros_like(x1)
    x1, y1, rw, rh = (torch.where(valid, t, zero) for t in (x1, y1, rw, rh))
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    if sampling_ratio > 0:
        gh = gw = torch.full((k,), min(sampling_ratio, MAX_ROI_SAMPLES), dtype=torch.long, device=input.device)
    else:
        gh = torch.ceil(rh / oh).clamp(0, MAX_ROI_SAMPLES).long()
        gw = torch.ceil(rw / ow).clamp(0, MAX_ROI_SAMPLES).long()
    gh, gw = gh * valid, gw * valid
    count = (gh * gw).clamp(min=1).to(input.dtype)
    a = _axis_weights(y1, rh, oh, gh, h)  # K×oh×H
    b = _axis_weights(x1, rw, ow, gw, w)  # K×ow×W
    out = input.new_zeros(k, c, oh, ow)
    batch = torch.where(valid, batch_f, torch.zeros_like(batch_f)).long()  # truncates, as torchvision
    for i in batch[valid].unique().tolist():
        sel = ((batch == i) & valid).nonzero().flatten()
        pooled = torch.einsum("kph,chw,kqw->kcpq", a[sel], input[i], b[sel])
        out = out.index_copy(0, sel, pooled)
    return out / count[:, None, None, None]


def fpn_levels(rois: Tensor, first_level: int, last_level: int, canonical_scale: float = 224.0,
               canonical_level: int = 4) -> Tensor:
    """FPN's level of each box: floor(k0 + log2(sqrt(w·h) / 224)), clamped to the levels there are
    (as torchvision's MultiScaleRoIAlign; its 1e-6 keeps boxes of exactly 224·2^j on the upper level)."""
    area = (rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2])
    lvl = torch.floor(canonical_level + torch.log2(area.clamp(min=0).sqrt() / canonical_scale + 1e-8) + 1e-6)
    return lvl.clamp(first_level, last_level).long() - first_level


def multilevel_roi_align(features: Sequence[Tensor], boxes: Tensor | Sequence[Tensor], output_size: int | tuple[int, int],
                         spatial_scales: Sequence[float], sampling_ratio: int = -1, aligned: bool = False,
                         canonical_scale: float = 224.0, canonical_level: int = 4, impl: str = "torch") -> Tensor:
    """RoIAlign from FPN levels (finest first; ``spatial_scales`` e.g. 1/4, 1/8, 1/16, 1/32): each box is
    pooled from the level its size assigns it to, in one op."""
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(features) != len(spatial_scales) or not features:
        raise ValueError(f"{len(features)} feature levels but {len(spatial_scales)} spatial scales")
    check_roi_attributes(oh, ow, sampling_ratio, spatial_scales, 1.0)
    rois = as_rois(boxes).to(features[0].dtype)
    first = int(round(-math.log2(spatial_scales[0])))
    last = int(round(-math.log2(spatial_scales[-1])))
    if impl == "native":
        from edgeseg.ops import native

        return native.multilevel_roi_align(features, rois, (oh, ow), spatial_scales, sampling_ratio, aligned,
                                           canonical_scale, canonical_level, first)
    if emitting_plugin():
        attrs = dict(output_height=oh, output_width=ow, sampling_ratio=sampling_ratio, aligned=int(aligned),
                     spatial_scales=[float(s) for s in spatial_scales], canonical_scale=float(canonical_scale),
                     canonical_level=canonical_level, first_level=first)
        shape = (rois.shape[0], features[0].shape[1], oh, ow)
        inputs = [rois[:, 1:], rois[:, 0].to(torch.int32), *features]  # as ONNX RoiAlign: boxes, batch indices
        return plugin_node("EdgeSegMultilevelRoIAlign", inputs, attrs, features[0].dtype, shape)
    level = fpn_levels(rois, first, last, canonical_scale, canonical_level)
    out = features[0].new_zeros(rois.shape[0], features[0].shape[1], oh, ow)
    for i, (feat, scale) in enumerate(zip(features, spatial_scales)):
        # Each level pools only its own boxes (gathered, then scattered back): pooling every box at every
        # level and keeping one cost 4× the RoIAlign work (benchmarks/results/instance_cpu.md).
        idx = torch.nonzero(level == i).squeeze(1)
        out = out.index_copy(0, idx, roi_align(feat, rois[idx], (oh, ow), scale, sampling_ratio, aligned))
    return out
