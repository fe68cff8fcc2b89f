"""Panoptic quality (Kirillov et al.; the seeds' formula), streamed over images by COCO panoptic's rules:

  PQ = sum_{(p,g) in TP} IoU(p, g) / (|TP| + |FP|/2 + |FN|/2) = SQ × RQ,
  SQ = sum_TP IoU / |TP|,   RQ = |TP| / (|TP| + |FP|/2 + |FN|/2)

computed per class, then averaged over the classes that occur (TP + FP + FN > 0) — over all classes, the
thing classes and the stuff classes. Per class SQ is 0 where the class has no TP, as COCO reports it, so the
averaged SQ × RQ is not the averaged PQ. Classes that never occur are NaN per class and left out of the means.

Matching (per image; segments are matched only within one image):
- a predicted and a ground-truth segment of the same category match when IoU > 0.5 (strictly: 0.5 is not a
  match). Above 0.5 no segment can match two, so the matching is unique without any search.
- id 0 is void in both maps. The IoU's union leaves out the predicted segment's pixels that are void in
  the ground truth; ground-truth pixels predicted as void stay in the union (they were missed).
- crowd ground-truth segments (``iscrowd``) are never matched and never false negatives.
- an unmatched predicted segment is a false positive unless more than half of its area lies on ground-truth
  void plus crowd segments of its own category. (COCO keeps one crowd region per category and image; several
  crowd segments of one category are summed here, which is the same where there is one.)
- segments are evaluated as given: two predicted segments of one stuff class are two segments (COCO's
  reference does the same; the model contract gives one segment per stuff class).
- a segment listed in a table but without pixels in its map takes no part (the fixed-size model table may
  list a segment that lost all its pixels); a pixel id missing from its table is refused.

Inputs follow the panoptic model contract: an H×W int map of segment ids (0 = void) and a segment table,
either the model's S×5 array (columns ``edgeseg.ops.paste.SEGMENT_FIELDS``: id, category, is_thing, area,
score; rows with id ≤ 0 are padding) or a list of dicts with ``id`` and ``category`` (``category_id`` is
read too, as COCO JSON names it), optionally ``is_thing`` (checked against the evaluator's thing classes)
and, for ground truth, ``iscrowd``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

MATCH_IOU = 0.5


@dataclass
class PanopticScores:
    pq: float
    sq: float
    rq: float
    pq_things: float
    sq_things: float
    rq_things: float
    pq_stuff: float
    sq_stuff: float
    rq_stuff: float
    per_class_pq: list[float]
    per_class_sq: list[float]
    per_class_rq: list[float]
    tp: list[int]
    fp: list[int]
    fn: list[int]
    classes: int          # classes averaged into pq (TP + FP + FN > 0)
    thing_classes: int    # ... of them things
    stuff_classes: int    # ... of them stuff
    images: int

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self, name: str = "panoptic") -> str:
        if not self.classes:
            return f"{name} PQ n/a (no segments to score)"
        return (f"{name} PQ {self.pq:.4f} (SQ {self.sq:.4f}, RQ {self.rq:.4f}; "
                f"things PQ {self.pq_things:.4f} SQ {self.sq_things:.4f} RQ {self.rq_things:.4f}; "
                f"stuff PQ {self.pq_stuff:.4f} SQ {self.sq_stuff:.4f} RQ {self.rq_stuff:.4f}; "
                f"{self.classes} classes, {self.images} images)")


def panoptic_from_labels(labels, thing_classes: Iterable[int], instances=None, ignore_index: int | None = None,
                         min_area: int = 0) -> tuple[np.ndarray, list[dict]]:
    """A panoptic map from a semantic label map: an H×W int32 segment-id map (0 = void) and its segment
    table, dicts ``{id, category, is_thing, iscrowd, area}`` — the form ``PanopticEvaluator`` reads.

    Stuff classes give one segment per class present; thing-class pixels one segment per (instance, class)
    of ``instances`` (H×W ids, 0 = none), or, where ``instances`` is None, per 4-connected component of
    each thing class — the semantic-model-plus-connected-components baseline. Void: ``ignore_index``
    pixels, thing pixels without an instance and segments smaller than ``min_area`` pixels. Ids run 1.. in
    that order: stuff by class, then things by instance id (components: by class, then in raster order)."""
    from scipy import ndimage

    labels = np.asarray(labels)
    things = sorted({int(c) for c in thing_classes})
    ids = np.zeros(labels.shape, np.int32)
    segments: list[dict] = []

    def add(region: np.ndarray, category: int, is_thing: bool) -> None:
        area = int(region.sum())
        if area == 0 or area < min_area:
            return
        ids[region] = len(segments) + 1
        segments.append({"id": len(segments) + 1, "category": int(category), "is_thing": int(is_thing),
                         "iscrowd": 0, "area": area})

    is_thing = np.isin(labels, things)
    stuff = ~is_thing if ignore_index is None else ~is_thing & (labels != ignore_index)
    for c in np.unique(labels[stuff]):
        add(labels == c, int(c), False)
    if instances is None:
        for c in things:
            components, n = ndimage.label(labels == c)  # 4-connected: diagonal neighbours stay apart
            for k in range(1, n + 1):
                add(components == k, c, True)
    else:
        inst = np.asarray(instances)
        if inst.shape != labels.shape:
            raise ValueError(f"instance ids {inst.shape} and labels {labels.shape} differ")
        keep = is_thing & (inst > 0)
        # One segment per (instance, class): an instance never spans two classes, but if it did it would split.
        for k, c in np.unique(np.stack([inst[keep], labels[keep]]), axis=1).T:
            add((inst == k) & (labels == c), int(c), True)
    return ids, segments


def segments_from_table(table) -> list[dict]:
    """The model's fixed-size segment table (S×5, columns ``SEGMENT_FIELDS``) as a list of segment dicts;
    padding rows (id ≤ 0) are dropped."""
    from edgeseg.ops.paste import SEGMENT_FIELDS

    t = np.asarray(table, dtype=np.float64)
    if t.ndim != 2 or t.shape[1] != len(SEGMENT_FIELDS):
        raise ValueError(f"a segment table is S×{len(SEGMENT_FIELDS)} ({', '.join(SEGMENT_FIELDS)}), got shape {t.shape}")
    if not np.isfinite(t[:, :3]).all():
        raise ValueError("segment table has a non-finite id, category or is_thing")
    col = {name: i for i, name in enumerate(SEGMENT_FIELDS)}
    out = []
    for row in t[t[:, col["id"]] > 0]:
        seg = {name: row[i] for name, i in col.items()}
        for key in ("id", "category", "is_thing", "area"):
            seg[key] = int(round(seg[key]))
        seg["score"] = float(seg["score"])
        out.append(seg)
    return out


class PanopticEvaluator:
    """Streaming PQ/SQ/RQ: ``add`` one image at a time (or ``add_batch``), then ``scores()``.

    ``num_classes`` categories 0..num_classes-1; ``thing_classes`` those that are things, the rest stuff."""

    def __init__(self, num_classes: int, thing_classes: Iterable[int], class_names: Sequence[str] | None = None):
        self.num_classes = int(num_classes)
        self.thing_classes = frozenset(int(c) for c in thing_classes)
        bad = [c for c in self.thing_classes if not 0 <= c < self.num_classes]
        if bad:
            raise ValueError(f"thing classes {sorted(bad)} outside 0..{self.num_classes - 1}")
        if class_names is not None and len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} class names for {self.num_classes} classes")
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
        self.is_thing = np.array([c in self.thing_classes for c in range(self.num_classes)])
        self.iou = np.zeros(self.num_classes, np.float64)
        self.tp = np.zeros(self.num_classes, np.int64)
        self.fp = np.zeros(self.num_classes, np.int64)
        self.fn = np.zeros(self.num_classes, np.int64)
        self.images = 0

    def _segments(self, segments, which: str) -> dict[int, tuple[int, bool]]:
        """id -> (category, iscrowd), checked."""
        if isinstance(segments, np.ndarray) or (hasattr(segments, "shape") and hasattr(segments, "dtype")):
            segments = segments_from_table(np.asarray(segments))
        out: dict[int, tuple[int, bool]] = {}
        for seg in segments:
            sid = int(seg["id"])
            cat = seg.get("category", seg.get("category_id"))
            if cat is None:
                raise ValueError(f"{which} segment {sid} has no category")
            cat = int(cat)
            if sid <= 0:
                raise ValueError(f"{which} segment id {sid}: ids are > 0 (0 is void)")
            if sid in out:
                raise ValueError(f"{which} segment id {sid} is listed twice")
            if not 0 <= cat < self.num_classes:
                raise ValueError(f"{which} segment {sid} has category {cat} outside 0..{self.num_classes - 1}")
            if "is_thing" in seg and bool(seg["is_thing"]) != bool(self.is_thing[cat]):
                raise ValueError(f"{which} segment {sid} says is_thing={int(bool(seg['is_thing']))} but category {cat} "
                                 f"is {'a thing' if self.is_thing[cat] else 'stuff'}")
            out[sid] = (cat, bool(seg.get("iscrowd", 0)))
        return out

    def add(self, pred_ids, pred_segments, gt_ids, gt_segments) -> None:
        """One image: ``pred_ids`` / ``gt_ids`` H×W segment-id maps (0 = void) and their segment tables."""
        pred_ids = np.asarray(pred_ids)
        gt_ids = np.asarray(gt_ids)
        if pred_ids.ndim != 2 or pred_ids.shape != gt_ids.shape:
            raise ValueError(f"prediction ids {pred_ids.shape} and ground-truth ids {gt_ids.shape} must be the same H×W")
        pred = self._segments(pred_segments, "predicted")
        gt = self._segments(gt_segments, "ground-truth")
        # Dense relabelling: the ids present in each map -> 0..n-1, then one bincount gives every intersection.
        p_vals, p_idx = np.unique(pred_ids.reshape(-1).astype(np.int64), return_inverse=True)
        g_vals, g_idx = np.unique(gt_ids.reshape(-1).astype(np.int64), return_inverse=True)
        for vals, table, which in ((p_vals, pred, "predicted"), (g_vals, gt, "ground-truth")):
            unknown = [int(v) for v in vals if v != 0 and int(v) not in table]
            if unknown:
                raise ValueError(f"{which} id map has segment ids {unknown[:5]} that its segment table does not list")
        inter = np.bincount(g_idx.reshape(-1) * len(p_vals) + p_idx.reshape(-1),
                            minlength=len(g_vals) * len(p_vals)).reshape(len(g_vals), len(p_vals))
        p_area = inter.sum(0)
        g_area = inter.sum(1)
        g_void = np.flatnonzero(g_vals == 0)
        void_of_pred = inter[g_void[0]] if len(g_void) else np.zeros(len(p_vals), np.int64)
        p_cat = np.array([pred[int(v)][0] if v != 0 else -1 for v in p_vals])
        g_cat = np.array([gt[int(v)][0] if v != 0 else -1 for v in g_vals])
        g_crowd = np.array([gt[int(v)][1] if v != 0 else False for v in g_vals])

        p_matched = np.zeros(len(p_vals), bool)
        g_matched = np.zeros(len(g_vals), bool)
        for gi, pi in zip(*np.nonzero(inter)):
            if g_vals[gi] == 0 or p_vals[pi] == 0 or g_crowd[gi] or g_cat[gi] != p_cat[pi]:
                continue
            i = int(inter[gi, pi])
            union = int(p_area[pi]) + int(g_area[gi]) - i - int(void_of_pred[pi])
            iou = i / union
            if iou > MATCH_IOU:
                c = g_cat[gi]
                self.tp[c] += 1
                self.iou[c] += iou
                p_matched[pi] = g_matched[gi] = True
        for gi in range(len(g_vals)):
            if g_vals[gi] != 0 and not g_crowd[gi] and not g_matched[gi]:
                self.fn[g_cat[gi]] += 1
        for pi in range(len(p_vals)):
            if p_vals[pi] == 0 or p_matched[pi]:
                continue
            c = p_cat[pi]
            ignored = int(void_of_pred[pi]) + int(inter[g_crowd & (g_cat == c), pi].sum())
            if ignored / p_area[pi] > 0.5:
                continue
            self.fp[c] += 1
        self.images += 1

    def add_batch(self, panoptic, segments, gt: Sequence[tuple]) -> None:
        """A batch of model outputs — ``panoptic`` N×H×W ids, ``segments`` N×S×5 tables — against ``gt``, N
        (ids, segments) pairs as ``SegDataset.panoptic(i)`` gives them. Each ground truth's H×W may be smaller
        than the batch's (padded input): the prediction is cropped to it."""
        panoptic, segments = np.asarray(panoptic), np.asarray(segments)
        if panoptic.ndim != 3 or segments.ndim != 3 or len(panoptic) != len(segments) or len(panoptic) != len(gt):
            raise ValueError(f"panoptic {panoptic.shape}, segments {segments.shape} and {len(gt)} ground truths "
                             "do not make one batch (N×H×W, N×S×5, N)")
        for ids, table, (gt_ids, gt_segments) in zip(panoptic, segments, gt):
            h, w = np.shape(gt_ids)
            if h > ids.shape[0] or w > ids.shape[1]:
                raise ValueError(f"ground truth {h}×{w} is larger than the prediction {ids.shape[0]}×{ids.shape[1]}")
            self.add(ids[:h, :w], table, gt_ids, gt_segments)

    def scores(self) -> PanopticScores:
        tp, fp, fn = self.tp.astype(np.float64), self.fp.astype(np.float64), self.fn.astype(np.float64)
        denom = tp + 0.5 * fp + 0.5 * fn
        present = denom > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            pq = np.where(present, self.iou / denom, np.nan)
            rq = np.where(present, tp / denom, np.nan)
            sq = np.where(present, np.where(tp > 0, self.iou / tp, 0.0), np.nan)

        def mean(values: np.ndarray, group: np.ndarray) -> float:
            keep = present & group
            return float(values[keep].mean()) if keep.any() else float("nan")

        every = np.ones(self.num_classes, bool)
        return PanopticScores(
            pq=mean(pq, every), sq=mean(sq, every), rq=mean(rq, every),
            pq_things=mean(pq, self.is_thing), sq_things=mean(sq, self.is_thing), rq_things=mean(rq, self.is_thing),
            pq_stuff=mean(pq, ~self.is_thing), sq_stuff=mean(sq, ~self.is_thing), rq_stuff=mean(rq, ~self.is_thing),
            per_class_pq=[float(v) for v in pq], per_class_sq=[float(v) for v in sq], per_class_rq=[float(v) for v in rq],
            tp=[int(v) for v in self.tp], fp=[int(v) for v in self.fp], fn=[int(v) for v in self.fn],
            classes=int(present.sum()), thing_classes=int((present & self.is_thing).sum()),
            stuff_classes=int((present & ~self.is_thing).sum()), images=self.images,
        )
