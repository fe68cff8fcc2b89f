"""Semantic segmentation metrics exactly as the FCN paper defines them, from a streaming confusion
matrix. With n_ij the pixels of class i predicted as j, t_i = sum_j n_ij and k classes:

  pixel accuracy      sum_i n_ii / sum_i t_i
  mean accuracy       (1/k) sum_i n_ii / t_i
  mean IoU            (1/k) sum_i n_ii / (t_i + sum_j n_ji - n_ii)
  frequency-weighted  (sum_k t_k)^-1 sum_i t_i n_ii / (t_i + sum_j n_ji - n_ii)

Pixels labelled ``ignore_index`` are not counted. A class absent from both ground truth and
prediction has an undefined IoU and is left out of the means (reported as NaN per class).

Boundary mIoU is the same mIoU on the pixels near a class edge of the ground truth: score a ``ConfusionMatrix`` on
``np.where(boundary_band(mask, width), mask, ignore_index)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class SemanticScores:
    pixel_accuracy: float
    mean_accuracy: float
    miou: float
    fw_iou: float
    per_class_iou: list[float]
    per_class_accuracy: list[float]
    pixels: int

    def as_dict(self) -> dict:
        return asdict(self)


class ConfusionMatrix:
    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)  # rows: truth, columns: prediction

    def update(self, prediction: np.ndarray, target: np.ndarray) -> None:
        prediction = np.asarray(prediction).reshape(-1).astype(np.int64)
        target = np.asarray(target).reshape(-1).astype(np.int64)
        if prediction.shape != target.shape:
            raise ValueError(f"prediction has {prediction.size} pixels, target {target.size}")
        keep = target != self.ignore_index
        prediction, target = prediction[keep], target[keep]
        if target.size and (target.min() < 0 or target.max() >= self.num_classes):
            raise ValueError(f"target class outside 0..{self.num_classes - 1} (and not the ignore index {self.ignore_index})")
        if prediction.size and (prediction.min() < 0 or prediction.max() >= self.num_classes):
            raise ValueError(f"predicted class outside 0..{self.num_classes - 1}")
        self.matrix += np.bincount(target * self.num_classes + prediction,
                                   minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def scores(self) -> SemanticScores:
        m = self.matrix.astype(np.float64)
        n_ii = np.diag(m)
        t = m.sum(axis=1)
        predicted = m.sum(axis=0)
        union = t + predicted - n_ii
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, n_ii / union, np.nan)
            acc = np.where(t > 0, n_ii / t, np.nan)
        total = t.sum()
        present = union > 0
        return SemanticScores(
            pixel_accuracy=float(n_ii.sum() / total) if total else float("nan"),
            mean_accuracy=float(np.nanmean(acc)) if np.any(t > 0) else float("nan"),
            miou=float(np.nanmean(iou)) if present.any() else float("nan"),
            fw_iou=float((t[present] * iou[present]).sum() / total) if total else float("nan"),
            per_class_iou=[float(v) for v in iou],
            per_class_accuracy=[float(v) for v in acc],
            pixels=int(total),
        )


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """H×W bool: the pixels of label map ``mask`` at most ``width`` 4-connected steps (city-block distance) from a
    class edge, an edge pixel being one with a 4-neighbour of another label (both sides of an edge count; the
    ignore label is a label here, so its border is an edge too). ``width`` 0: the edge pixels themselves."""
    from scipy import ndimage

    if width < 0:
        raise ValueError(f"boundary band width {width} is negative")
    mask = np.asarray(mask)
    edge = np.zeros(mask.shape, bool)
    vertical, horizontal = mask[:-1] != mask[1:], mask[:, :-1] != mask[:, 1:]
    edge[:-1] |= vertical
    edge[1:] |= vertical
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    # width 0 must not reach scipy, which dilates until nothing changes when iterations < 1
    return ndimage.binary_dilation(edge, iterations=width) if width and edge.any() else edge
