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


def detections(out: dict[str, np.ndarray], image: int, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Image ``image``'s valid detections from the batched fixed-size contract (slots < num_detections);
    with ``size`` (H, W) the padding ``preprocess`` added is undone: masks cropped, boxes clipped."""
    k = int(out["num_detections"][image])
    found = {key: out[key][image, :k] for key in ("boxes", "scores", "labels", "masks") if key in out}
    if size is not None:
        h, w = size
        found["masks"] = found["masks"][:, :h, :w]
        found["boxes"] = np.clip(found["boxes"], 0, [w, h, w, h]).astype(found["boxes"].dtype)
    return found


@dataclass
class InstanceTruth:
    """One image's ground-truth instances, what mask AP is scored against: K×H×W bool masks, their K labels."""
    masks: np.ndarray
    labels: np.ndarray


def instance_truth(ids: np.ndarray, semantic: np.ndarray) -> InstanceTruth:
    """From an H×W instance-id map (0: none) and the H×W semantic labels: each instance's class is the majority
    class of its pixels."""
    ids = np.asarray(ids)
    keys = [k for k in np.unique(ids) if k > 0]
    masks = np.stack([ids == k for k in keys]) if keys else np.zeros((0, *ids.shape), bool)
    labels = np.array([np.bincount(np.asarray(semantic)[m].ravel()).argmax() for m in masks], np.int64)
    return InstanceTruth(masks, labels)


def components_as_detections(labels: np.ndarray, probabilities: np.ndarray, classes) -> dict[str, np.ndarray]:
    """The 4-connected components (``scipy.ndimage.label``) of each of ``classes`` in an H×W label map, as
    detections: the box around the pixels, score = the component's mean probability of its class (``probabilities``
    C×H×W), the class as label, the component as mask. How a semantic model is scored as an instance model (the
    connected-components baseline): touching objects of one class become one detection."""
    from scipy import ndimage

    labels = np.asarray(labels)
    masks, boxes, scores, classes_found = [], [], [], []
    for c in classes:
        components, n = ndimage.label(labels == c)
        for k in range(1, n + 1):
            m = components == k
            ys, xs = np.nonzero(m)
            masks.append(m)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            scores.append(float(probabilities[c][m].mean()))
            classes_found.append(c)
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(classes_found, np.int64),
            "masks": (np.stack(masks) if masks else np.zeros((0, *labels.shape), bool)).astype(np.float32)}


def mask_ap(pairs, class_names: list[str]) -> float:
    """Mask AP (COCO .50:.95, 0–1) of (InstanceTruth, detections at the image's size) pairs; 0 where there is
    nothing to score."""
    ev = InstanceEvaluator(class_names)
    for truth, found in pairs:
        ev.add(truth.masks, truth.labels, found)
    return max(0.0, ev.scores()["segm"].ap)


@dataclass
class APScores:
    """COCO's summary for one IoU type (bbox or segm): AP at IoU .50:.95, .50, .75, and by object size."""
    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float

    def line(self, name: str) -> str:
        if self.ap < 0:
            return f"{name} AP n/a (no detections, or no ground truth, to score)"
        return (f"{name} AP {self.ap:.4f} (AP50 {self.ap50:.4f}, AP75 {self.ap75:.4f}; "
                f"S {self.ap_small:.4f}, M {self.ap_medium:.4f}, L {self.ap_large:.4f})")


class InstanceEvaluator:
    """Box and mask AP of a detector's outputs against ground-truth instances, computed by pycocotools
    (COCO's definitions: 101-point interpolated precision, IoU .50:.95, max 100 detections; -1 where a
    size range has no ground truth). Masks are binarised at 0.5, as COCO results are."""

    def __init__(self, class_names: list[str]):
        self.class_names = list(class_names)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.results: list[dict] = []

    def add(self, gt_masks: np.ndarray, gt_labels: np.ndarray, pred: dict[str, np.ndarray]) -> None:
        """One image: ``gt_masks`` K×H×W (bool), ``gt_labels`` K, ``pred`` its valid detections
        (``boxes``, ``scores``, ``labels``, ``masks`` H×W probabilities), as ``detections`` returns them."""
        from pycocotools import mask as rle

        image_id = len(self.images) + 1
        h, w = gt_masks.shape[-2:]
        self.images.append({"id": image_id, "height": int(h), "width": int(w)})
        for m, label in zip(gt_masks.astype(bool), gt_labels):
            ys, xs = np.nonzero(m)
            if not len(ys):
                continue
            code = rle.encode(np.asfortranarray(m.astype(np.uint8)))
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": int(label), "iscrowd": 0,
                "area": float(m.sum()), "segmentation": code,
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]})
        self._add_results(image_id, pred)

    def add_coco(self, image: dict, annotations: list[dict], label_of: dict[int, int], pred: dict[str, np.ndarray]) -> None:
        """One image of a COCO JSON with its annotations as they are written (polygons or RLE, ``area``, ``bbox``,
        ``iscrowd``), so pycocotools scores exactly what it scores from the file; ``label_of`` maps the JSON's
        category ids to the model's labels. ``pred`` as in ``add``. Do not mix with ``add`` in one evaluator."""
        image_id = int(image["id"])
        self.images.append({"id": image_id, "height": int(image["height"]), "width": int(image["width"])})
        for a in annotations:
            self.annotations.append({**a, "id": len(self.annotations) + 1, "image_id": image_id,
                                     "category_id": int(label_of[a["category_id"]]), "iscrowd": int(a.get("iscrowd", 0))})
        self._add_results(image_id, pred)

    def _add_results(self, image_id: int, pred: dict[str, np.ndarray]) -> None:
        from pycocotools import mask as rle

        for box, score, label, mask in zip(pred["boxes"], pred["scores"], pred["labels"], pred["masks"]):
            code = rle.encode(np.asfortranarray((mask >= 0.5).astype(np.uint8)))
            x1, y1, x2, y2 = (float(v) for v in box)
            self.results.append({"image_id": image_id, "category_id": int(label), "score": float(score),
                                 "bbox": [x1, y1, x2 - x1, y2 - y1], "segmentation": code})

    def scores(self) -> dict[str, APScores]:
        """``{"bbox": ..., "segm": ...}``; all -1 when there are no detections to score."""
        import contextlib
        import io

        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        empty = APScores(-1.0, -1.0, -1.0, -1.0, -1.0, -1.0)
        if not self.results or not self.annotations:
            return {"bbox": empty, "segm": empty}
        gt = COCO()
        gt.dataset = {"images": self.images, "annotations": self.annotations,
                      "categories": [{"id": i, "name": n} for i, n in enumerate(self.class_names) if i > 0]}
        out = {}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            gt.createIndex()
            dt = gt.loadRes(self.results)
            for kind in ("bbox", "segm"):
                ev = COCOeval(gt, dt, kind)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
                out[kind] = APScores(*(float(v) for v in ev.stats[:6]))
        return out
