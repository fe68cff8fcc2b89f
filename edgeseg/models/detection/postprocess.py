"""The panoptic merge every panoptic model ends with, in the graph: instances and the semantic prediction
become one segment-id map and a fixed-size segment table (``edgeseg.ops.panoptic_merge`` on boxes, which the
tensorrt flavour turns into the EdgeSegPanopticMerge plugin node; ``ops.panoptic_paste`` on full-size masks).

Output contract of panoptic models (eager and exported): ``panoptic`` N×H×W int32 segment ids (0 = void),
``segments`` N×S×5 float32 with columns ``SEGMENT_FIELDS`` (id, category, is_thing, area, score; category is
the data set's class index; unused rows zero), S = max_instances + stuff classes; ``semantic_logits``
N×K×H×W for the semantic head's mIoU.
"""
from __future__ import annotations

import torch
from torch import Tensor

from edgeseg import ops
from edgeseg.errors import ModelError

PANOPTIC_OUTPUTS = ("panoptic", "segments", "semantic_logits")


def thing_first_order(num_classes: int, thing_classes: tuple[int, ...] | list[int]) -> list[int]:
    """The class order panoptic_paste works in (thing classes first, then stuff): position -> class index."""
    things = sorted(set(int(c) for c in thing_classes))
    if not things or not all(0 <= c < num_classes for c in things) or len(things) == num_classes:
        raise ModelError(f"thing classes {list(thing_classes)} must be a non-empty proper subset of 0..{num_classes - 1}",
                         "name the data set's thing classes (its other classes are stuff)")
    return things + [c for c in range(num_classes) if c not in things]


def panoptic_merge(semantic_logits: Tensor, masks: Tensor | None, scores: Tensor, labels: Tensor,
                   thing_classes: tuple[int, ...] | list[int], overlap_threshold: float = 0.5,
                   min_stuff_area: int = 64, score_threshold: float = 0.5, boxes: Tensor | None = None,
                   mask_rule: str = "paste") -> dict[str, Tensor]:
    """``semantic_logits`` N×K×H×W; instances per image ``scores`` N×D, ``labels`` N×D (class indices; empty slots
    score 0) and either ``masks`` N×D×H×W (full-size probabilities, > 0.5 is in; ``boxes`` None) or ``boxes`` N×D×4
    with ``mask_rule`` "paste" (``masks`` N×D×M×M', the mask head's, pasted into the boxes) or "box_class" (no
    masks: the box's pixels whose semantic argmax is the instance's class). With boxes the merge reads each
    instance only inside its box (``ops.panoptic_merge``); the outputs equal the full-size route's. The images are
    merged one by one (the merge op takes one image), so an exported graph's batch is the sample's."""
    n, k = semantic_logits.shape[:2]
    order = thing_first_order(k, thing_classes)
    to_class = torch.tensor(order, dtype=torch.int64, device=semantic_logits.device)  # position -> class
    to_position = torch.argsort(to_class)                                                  # class -> position
    semantic = to_position[semantic_logits.argmax(1)]
    things = len(set(thing_classes))
    ids, tables = [], []
    for i in range(n):
        if boxes is None:
            assert masks is not None
            pan, table = ops.panoptic_paste(semantic[i], masks[i], scores[i], to_position[labels[i]], k, things,
                                            overlap_threshold, min_stuff_area, score_threshold)
        else:
            pan, table = ops.panoptic_merge(semantic[i], None if masks is None else masks[i], boxes[i], scores[i],
                                            to_position[labels[i]], k, things, mask_rule, overlap_threshold,
                                            min_stuff_area, score_threshold)
        used = table[:, :1] > 0
        category = to_class[table[:, 1].clamp(0, k - 1).long()].to(table.dtype)  # clamped as float: TensorRT's Clip
        table = torch.cat([table[:, :1], torch.where(used[:, 0], category, torch.zeros_like(category))[:, None], table[:, 2:]], 1)
        ids.append(pan)
        tables.append(table)
    return {"panoptic": torch.stack(ids), "segments": torch.stack(tables), "semantic_logits": semantic_logits}


__all__ = ["PANOPTIC_OUTPUTS", "panoptic_merge", "thing_first_order"]
