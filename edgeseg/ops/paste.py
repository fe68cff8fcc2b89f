"""Mask pasting (Mask R-CNN) and the panoptic head (LPSNet), in the graph rather than on the host.

paste_masks: torchvision's ``paste_masks_in_image`` (the reference users compare with): the mask is
zero-padded by one cell, the box expanded about its centre by (M+2)/M and truncated to integers, and the
padded mask resized bilinearly (align_corners=False) to the integer box and written at its corner,
clipped to the image. A box with a non-finite corner pastes nothing.

panoptic_paste: instances, from high to low score, occupy the pixels of their (binary) masks; one
whose overlap with pixels already occupied exceeds ``overlap_threshold`` of its area is dropped,
otherwise it keeps its not-yet-occupied pixels. Semantic labels ≥ ``num_thing_classes`` are stuff:
each stuff class's unoccupied pixels become one segment if there are at least ``min_stuff_area``.
Written branch-free over a fixed instance count, so it traces (the portable flavour unrolls it).

panoptic_merge: panoptic_paste with each instance given by its box, never a full-image mask: ``mask_rule`` 0
pastes the mask head's M×M' mask into the box (as paste_masks, soft; in where > 0.5), 1 takes the pixels whose
centre lies in the box and whose semantic label is the instance's class (LPSNet). Its reference (eager, portable)
builds the full-size masks and calls panoptic_paste, so the result equals that composition bit for bit; the
native launcher and the EdgeSegPanopticMerge node read each instance only inside its box.
"""
from __future__ import annotations

import torch
from torch import Tensor

from edgeseg.ops.export import emitting_plugin, plugin_node, plugin_node_multi

SEGMENT_FIELDS = ("id", "category", "is_thing", "area", "score")


def paste_masks(masks: Tensor, boxes: Tensor, image: Tensor | tuple[int, int], threshold: float = 0.5,
                impl: str = "torch") -> Tensor:
    """R×H×W: ``masks`` (R×M×M' probabilities) pasted into ``boxes`` (R×4, x1 y1 x2 y2, image pixels).

    ``image``: (H, W), or a tensor whose last two dims are H×W (so the size stays dynamic in ONNX).
    ``threshold`` ≥ 0 gives 0/1 (value ≥ threshold); < 0 gives the interpolated probabilities."""
    h, w = image if isinstance(image, tuple) else image.shape[-2:]
    if impl == "native":
        from edgeseg.ops import native

        return native.paste_masks(masks, boxes, (int(h), int(w)), threshold)
    if impl != "torch":
        raise ValueError(f"unknown impl '{impl}'; use 'torch' or 'native'")
    if emitting_plugin():
        like = image if isinstance(image, Tensor) else masks.new_zeros(1, 1, h, w)
        return plugin_node("EdgeSegPasteMasks", [masks, boxes, like], dict(threshold=float(threshold)),
                           masks.dtype, (masks.shape[0], h, w))
    r, mh, mw = masks.shape
    x1, y1, x2, y2 = boxes.unbind(1)
    ok = torch.isfinite(boxes).all(1)  # a box with a non-finite corner pastes zeros (the math core's rule)
    x1, y1, x2, y2 = (torch.where(ok, t, torch.zeros_like(t)) for t in (x1, y1, x2, y2))
    a = _paste_axis(y1, y2, mh, h, masks)  # R×H×mh
    b = _paste_axis(x1, x2, mw, w, masks)  # R×W×mw
    soft = torch.einsum("rhm,rmn,rwn->rhw", a, masks, b) * ok.to(masks.dtype)[:, None, None]
    return soft if threshold < 0 else (soft >= threshold).to(masks.dtype)


def _trunc(v: Tensor) -> Tensor:
    return torch.where(v < 0, torch.ceil(v), torch.floor(v))  # aten.trunc has no ONNX translation


def _paste_axis(lo: Tensor, hi: Tensor, m: int, size, like: Tensor) -> Tensor:
    """R×size×m: each image pixel's bilinear weights over the mask's m cells along one axis, by
    torchvision's paste_masks_in_image arithmetic in float32 (see paste_grid in plugins/include/edgeseg/paste.h):
    the box expanded by (m+2)/m and truncated, the zero-padded mask resized to the integer box."""
    f32 = dict(dtype=torch.float32, device=lo.device)
    lo, hi = lo.float(), hi.float()
    expand = torch.tensor((m + 2) / m, **f32)
    half = (hi - lo) * 0.5 * expand
    centre = (hi + lo) * 0.5
    limit = 536870912.0  # corners clamped to ±2^29 before truncation, as in the math core
    c0 = _trunc((centre - half).clamp(-limit, limit))
    c1 = _trunc((centre + half).clamp(-limit, limit))
    scale = torch.tensor(float(m + 2), **f32) / (c1 - c0 + 1).clamp(min=1)
    pix = torch.arange(size, **f32)
    d = pix[None, :] - c0[:, None]  # R×size
    inside = (d >= 0) & (pix[None, :] <= c1[:, None])
    src = (scale[:, None] * (d + 0.5) - 0.5).clamp(min=0)
    i0 = src.floor().clamp(max=m + 1)
    i1 = torch.where(i0 < m + 1, i0 + 1, i0)
    l1 = (src - i0).clamp(0, 1)
    cells = torch.arange(1, m + 1, **f32)  # padded cells 1..m are the mask; 0 and m+1 are the zero ring
    weights = ((i0[..., None] == cells) * (1 - l1)[..., None] + (i1[..., None] == cells) * l1[..., None])
    return (weights * inside[..., None]).to(like.dtype)


def panoptic_paste(semantic: Tensor, masks: Tensor, scores: Tensor, classes: Tensor, num_classes: int,
                   num_thing_classes: int, overlap_threshold: float = 0.5, min_stuff_area: int = 4096,
                   score_threshold: float = 0.5, impl: str = "torch") -> tuple[Tensor, Tensor]:
    """One image: ``semantic`` H×W labels, ``masks`` R×H×W (> 0.5 is in), ``scores`` R, ``classes`` R.

    Returns the panoptic id map H×W (int32; 0 = void) and the segment table (R + stuff classes)×5 float32
    with columns ``SEGMENT_FIELDS``; segment id i is row i−1, unused rows are zero."""
    r = masks.shape[0]
    n_stuff = num_classes - num_thing_classes
    if impl == "native":
        from edgeseg.ops import native

        return native.panoptic_paste(semantic, masks, scores, classes, num_classes, num_thing_classes,
                                     overlap_threshold, min_stuff_area, score_threshold)
    if impl != "torch":
        raise ValueError(f"unknown impl '{impl}'; use 'torch' or 'native'")
    if emitting_plugin():
        attrs = dict(num_classes=num_classes, num_thing_classes=num_thing_classes, overlap_threshold=float(overlap_threshold),
                     min_stuff_area=int(min_stuff_area), score_threshold=float(score_threshold))
        ids, table = plugin_node_multi("EdgeSegPanopticPaste", [semantic.to(torch.int32), masks, scores, classes.to(torch.int32)],
                                       attrs, [torch.int32, torch.float32], [tuple(semantic.shape), (r + n_stuff, 5)])
        return ids, table
    rows = r + n_stuff
    # Score descending, ties by index (panoptic_before in the math core); ranks, not sort: exports everywhere.
    # A NaN score ranks as -inf (panoptic_key): the order stays total and NaN is never accepted.
    key = torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores)
    idx = torch.arange(r, device=scores.device)
    before = (key[:, None] > key[None, :]) | ((key[:, None] == key[None, :]) & (idx[:, None] < idx[None, :]))
    rank = before.sum(0)
    # (argmax over an empty axis fails: no instances leave the order empty, a size known when tracing)
    order = (rank[None, :] == idx[:, None]).int().argmax(1) if r else idx
    binary = masks[order] > 0.5
    occupied = torch.zeros(semantic.shape, dtype=torch.int32, device=semantic.device)
    table = torch.zeros(rows, 5, dtype=torch.float32, device=semantic.device)
    slots = torch.arange(rows, device=semantic.device)
    next_id = torch.ones((), dtype=torch.int32, device=semantic.device)
    for j in range(r):
        m = binary[j]
        area = m.sum()
        free = m & (occupied == 0)
        kept = free.sum()
        score = scores[order[j]]
        ok = (score >= score_threshold) & (area > 0) & ((area - kept).float() <= overlap_threshold * area.float()) & (kept > 0)
        occupied = torch.where(free & ok, next_id, occupied)
        row = torch.stack([next_id.float(), classes[order[j]].float(), torch.ones_like(score).float(), kept.float(), score.float()])
        table = torch.where(((slots == next_id - 1) & ok)[:, None], row[None], table)
        next_id = next_id + ok.to(torch.int32)
    for c in range(num_thing_classes, num_classes):
        region = (semantic == c) & (occupied == 0)
        area = region.sum()
        ok = (area >= min_stuff_area) & (area > 0)
        occupied = torch.where(region & ok, next_id, occupied)
        row = torch.stack([next_id.float(), torch.tensor(float(c), device=semantic.device), torch.zeros((), device=semantic.device),
                           area.float(), torch.ones((), device=semantic.device)])
        table = torch.where(((slots == next_id - 1) & ok)[:, None], row[None], table)
        next_id = next_id + ok.to(torch.int32)
    return occupied, table


MASK_RULES = {"paste": 0, "box_class": 1}


def box_class_masks(semantic: Tensor, boxes: Tensor, classes: Tensor) -> Tensor:
    """R×H×W {0, 1} (as ``semantic``'s float): the pixels whose centre (x + 0.5, y + 0.5) lies in the box (edges
    included) and whose label in ``semantic`` (H×W) is the instance's class: mask_rule 1 as full-size masks. A box
    with a NaN or ±inf corner has no pixels."""
    h, w = semantic.shape[-2:]
    xs = torch.arange(w, device=semantic.device).to(boxes.dtype) + 0.5
    ys = torch.arange(h, device=semantic.device).to(boxes.dtype) + 0.5
    in_x = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])                     # R×W
    in_y = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])                     # R×H
    same = semantic[None] == classes[:, None, None]                          # R×H×W
    ok = torch.isfinite(boxes).all(1)[:, None, None]  # a non-finite corner: no pixels (the math core's rule)
    return (same & ok & in_y[:, :, None] & in_x[:, None, :]).to(boxes.dtype)


def panoptic_merge(semantic: Tensor, masks: Tensor | None, boxes: Tensor, scores: Tensor, classes: Tensor,
                   num_classes: int, num_thing_classes: int, mask_rule: str = "paste", overlap_threshold: float = 0.5,
                   min_stuff_area: int = 4096, score_threshold: float = 0.5, impl: str = "torch") -> tuple[Tensor, Tensor]:
    """One image, as ``panoptic_paste``, with the instances given by ``boxes`` R×4 (x1 y1 x2 y2, image pixels):
    ``mask_rule="paste"``: ``masks`` R×M×M' (the mask head's probabilities) pasted into the boxes; ``"box_class"``:
    no masks (None), the box's pixels of the instance's class in ``semantic``. Same outputs as ``panoptic_paste``."""
    if mask_rule not in MASK_RULES:
        raise ValueError(f"unknown mask_rule '{mask_rule}'; use one of {tuple(MASK_RULES)}")
    rule = MASK_RULES[mask_rule]
    r = boxes.shape[0]
    if rule == 1:
        masks = boxes.new_zeros(r, 0, 0)  # not read: the node's R×0×0
    elif masks is None:
        raise ValueError("mask_rule 'paste' needs the R×M×M' masks")
    if impl == "native":
        from edgeseg.ops import native

        return native.panoptic_merge(semantic, masks, boxes, scores, classes, rule, num_classes, num_thing_classes,
                                     overlap_threshold, min_stuff_area, score_threshold)
    if impl != "torch":
        raise ValueError(f"unknown impl '{impl}'; use 'torch' or 'native'")
    if emitting_plugin():
        attrs = dict(num_classes=num_classes, num_thing_classes=num_thing_classes, overlap_threshold=float(overlap_threshold),
                     min_stuff_area=int(min_stuff_area), score_threshold=float(score_threshold), mask_rule=rule)
        ids, table = plugin_node_multi("EdgeSegPanopticMerge", [semantic.to(torch.int32), masks, boxes, scores,
                                                                classes.to(torch.int32)],
                                       attrs, [torch.int32, torch.float32],
                                       [tuple(semantic.shape), (r + num_classes - num_thing_classes, 5)])
        return ids, table
    full = (paste_masks(masks, boxes, semantic, threshold=-1) if rule == 0
            else box_class_masks(semantic, boxes, classes))
    return panoptic_paste(semantic, full, scores, classes, num_classes, num_thing_classes, overlap_threshold,
                          min_stuff_area, score_threshold)
