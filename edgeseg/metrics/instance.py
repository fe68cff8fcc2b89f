"""Instance outputs compared as detections, never slot by slot: two runs of the same detector may order
near-tied detections differently, so parity matches them by box overlap first."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A×B IoU of (x1, y1, x2, y2) boxes (empty boxes have IoU 0 with everything)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class Match:
    pairs: list[tuple[int, int]]  # (reference index, candidate index)
    ious: np.ndarray              # box IoU of each pair
    unmatched_reference: int
    unmatched_candidate: int


def match_detections(ref_boxes: np.ndarray, ref_scores: np.ndarray, ref_labels: np.ndarray,
                     cand_boxes: np.ndarray, cand_labels: np.ndarray, min_iou: float = 0.5) -> Match:
    """Greedy one-to-one matching: reference detections by decreasing score each take the unmatched
    candidate of the same label with the highest box IoU, if it is at least ``min_iou``."""
    iou = box_iou(ref_boxes, cand_boxes)
    iou = np.where(ref_labels[:, None] == cand_labels[None, :], iou, -1.0)
    taken = np.zeros(len(cand_boxes), bool)
    pairs, ious = [], []
    for r in np.argsort(-ref_scores, kind="stable"):
        row = np.where(taken, -1.0, iou[r])
        c = int(row.argmax()) if len(row) else -1
        if c >= 0 and row[c] >= min_iou:
            taken[c] = True
            pairs.append((int(r), c))
            ious.append(row[c])
    return Match(pairs, np.asarray(ious), len(ref_boxes) - len(pairs), len(cand_boxes) - len(pairs))


def detections(out: dict[str, np.ndarray], image: int) -> dict[str, np.ndarray]:
    """Image ``image``'s valid detections from the batched fixed-size contract (slots < num_detections)."""
    k = int(out["num_detections"][image])
    return {key: out[key][image, :k] for key in ("boxes", "scores", "labels", "masks") if key in out}
