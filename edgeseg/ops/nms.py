"""Non-maximum suppression with a fixed-size answer, so a detector's whole post-processing stays in the graph.

``nms_keep(boxes N×K×4, scores N×K, iou) -> N×K`` is 1 where greedy NMS (torchvision's ``nms``: a box is
dropped when its IoU with a kept, higher-scoring box exceeds ``iou``) keeps the box, else 0. The answer has
the input's shape, so nothing downstream depends on how many boxes survive; ``batched`` NMS (no suppression
across classes or levels) is the same call on boxes offset per group, as torchvision's ``batched_nms``.

Export: ONNX ``NonMaxSuppression`` (which ONNX Runtime runs and TensorRT 10 maps to its NMS layer) followed
by a ``ScatterND`` of its selected indices into zeros: the same graph in both flavours.
"""
from __future__ import annotations

import numpy as np
import onnxscript
import torch
import torchvision
from onnxscript import opset20 as op
from torch import Tensor


@torch.library.custom_op("edgeseg::nms_keep", mutates_args=())
def _nms_keep(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    keep = torch.zeros_like(scores)
    for i in range(boxes.shape[0]):
        keep[i, torchvision.ops.nms(boxes[i], scores[i], iou_threshold)] = 1.0
    return keep


@_nms_keep.register_fake
def _(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    return torch.empty_like(scores)


def _nms_keep_onnx(boxes, scores, iou_threshold: float):
    max_per_class = op.Constant(value=onnxscript.ir.tensor(np.array([1 << 30], np.int64)))
    iou = op.Constant(value=onnxscript.ir.tensor(np.array([iou_threshold], np.float32)))
    selected = op.NonMaxSuppression(boxes, op.Unsqueeze(scores, [1]), max_per_class, iou)  # M×(batch, class, box)
    where = op.Gather(selected, op.Constant(value_ints=[0, 2]), axis=1)
    ones = op.Expand(op.CastLike(op.Constant(value_float=1.0), scores), op.Shape(where, end=1))
    return op.ScatterND(op.Mul(scores, op.CastLike(op.Constant(value_float=0.0), scores)), where, ones)


# What the exporter needs to translate edgeseg's graph-level ops (passed as its custom_translation_table).
ONNX_TRANSLATIONS = {torch.ops.edgeseg.nms_keep.default: _nms_keep_onnx}


def nms_keep(boxes: Tensor, scores: Tensor, iou_threshold: float, groups: Tensor | None = None) -> Tensor:
    """N×K keep mask (1 kept, 0 suppressed) of greedy NMS per image; with ``groups`` (N×K integers) boxes
    only suppress boxes of their own group. Boxes (x1, y1, x2, y2) are float32 in every precision."""
    boxes = boxes.float()
    if groups is not None:  # torchvision's batched_nms: shift each group beyond every other group's boxes
        span = boxes.amax(dim=(1, 2)) + 1  # boxes are clipped to the image: non-negative
        boxes = boxes + (groups.to(boxes.dtype) * span[:, None])[..., None]
    return _nms_keep(boxes, scores.float(), float(iou_threshold))
