"""PQ/SQ/RQ: hand-computed cases with exact numbers, and random scenes against torchmetrics' PanopticQuality."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgeseg.metrics import PanopticEvaluator, segments_from_table


def seg(sid, cat, iscrowd=0):
    return {"id": sid, "category": cat, "iscrowd": iscrowd}


def one(pred_ids, pred_segs, gt_ids, gt_segs, num_classes=2, things=(1,)):
    ev = PanopticEvaluator(num_classes, things)
    ev.add(np.asarray(pred_ids), pred_segs, np.asarray(gt_ids), gt_segs)
    return ev.scores()


# 4×4 scenes: class 0 is stuff, class 1 a thing.
GT_ROW = np.array([[2, 2, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])  # thing (id 2) on row 0, stuff (id 1) below
GT_ROW_SEGS = [seg(1, 0), seg(2, 1)]


def test_iou_exactly_half_is_not_a_match():
    pred = np.array([[7, 7, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]])  # thing covers 2 of 4: IoU 2/4
    s = one(pred, [seg(5, 0), seg(7, 1)], GT_ROW, GT_ROW_SEGS)
    assert (s.tp, s.fp, s.fn) == ([1, 0], [0, 1], [0, 1])
    assert s.per_class_pq == pytest.approx([12 / 14, 0.0]) and s.per_class_sq == pytest.approx([12 / 14, 0.0])
    assert s.per_class_rq == pytest.approx([1.0, 0.0])
    assert s.pq == pytest.approx(6 / 14) and s.sq == pytest.approx(6 / 14) and s.rq == pytest.approx(0.5)
    assert s.pq_things == 0.0 and s.pq_stuff == pytest.approx(12 / 14)
    assert (s.classes, s.thing_classes, s.stuff_classes, s.images) == (2, 1, 1, 1)


def test_iou_above_half_matches():
    pred = np.array([[7, 7, 7, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]])  # 3 of 4: IoU 3/4
    s = one(pred, [seg(5, 0), seg(7, 1)], GT_ROW, GT_ROW_SEGS)
    assert (s.tp, s.fp, s.fn) == ([1, 1], [0, 0], [0, 0])
    assert s.per_class_pq == pytest.approx([12 / 13, 0.75])
    assert s.pq == pytest.approx((12 / 13 + 0.75) / 2) and s.rq == 1.0
    assert s.pq_things == pytest.approx(0.75) and s.pq_stuff == pytest.approx(12 / 13)
    assert "PQ 0.8365" in s.line()


def test_wrong_category_and_unmatched_segments():
    pred = np.array([[7, 7, 7, 7], [5, 5, 5, 5], [5, 5, 5, 5], [9, 9, 5, 5]])
    # the row is predicted as stuff class 0 (id 7): a second class-0 segment, FP; id 9 is an extra thing, FP;
    # the gt thing is missed, FN. Stuff id 5 covers 10 of the 12 gt stuff pixels: IoU 10/12.
    s = one(pred, [seg(5, 0), seg(7, 0), seg(9, 1)], GT_ROW, GT_ROW_SEGS)
    assert (s.tp, s.fp, s.fn) == ([1, 0], [1, 1], [0, 1])
    assert s.per_class_pq == pytest.approx([(10 / 12) / 1.5, 0.0])
    assert s.per_class_sq == pytest.approx([10 / 12, 0.0]) and s.per_class_rq == pytest.approx([1 / 1.5, 0.0])


# Void: thing (id 2, class 1) top-left 2×2, void top-right 2×2, stuff (id 1, class 0) the bottom half.
GT_VOID = np.array([[2, 2, 0, 0], [2, 2, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
GT_VOID_SEGS = [seg(1, 0), seg(2, 1)]


def test_void_pixels_leave_the_union():
    pred = np.array([[7, 7, 7, 7], [7, 7, 7, 7], [5, 5, 5, 5], [5, 5, 5, 5]])  # the thing spills over the void
    s = one(pred, [seg(5, 0), seg(7, 1)], GT_VOID, GT_VOID_SEGS)
    assert (s.tp, s.fp, s.fn) == ([1, 1], [0, 0], [0, 0])
    assert s.pq == 1.0 and s.sq == 1.0 and s.rq == 1.0  # without the void rule the thing's IoU is 4/8: no match


def test_ground_truth_missed_as_void_stays_in_the_union():
    # COCO's rule (torchmetrics differs: it also drops prediction-void pixels from the union, and gives 1.0 here).
    pred = np.array([[7, 7, 0, 0], [7, 0, 0, 0], [5, 5, 5, 5], [5, 5, 5, 5]])
    s = one(pred, [seg(5, 0), seg(7, 1)], GT_VOID, GT_VOID_SEGS)
    assert s.per_class_pq == pytest.approx([1.0, 0.75])


def test_mostly_void_prediction_is_not_a_false_positive():
    base = np.array([[7, 7, 0, 0], [7, 7, 0, 0], [5, 5, 5, 5], [5, 5, 5, 5]])
    over_void = base.copy()
    over_void[0:2, 3] = 8  # 2 void pixels ...
    over_void[2, 3] = 8    # ... of 3: more than half void, ignored
    s = one(over_void, [seg(5, 0), seg(7, 1), seg(8, 1)], GT_VOID, GT_VOID_SEGS)
    assert (s.fp, s.tp) == ([0, 0], [1, 1])
    half_void = base.copy()
    half_void[0:2, 3] = 8
    half_void[2:4, 3] = 8  # 2 of 4 void: exactly half is not "more than half", a false positive
    s = one(half_void, [seg(5, 0), seg(7, 1), seg(8, 1)], GT_VOID, GT_VOID_SEGS)
    assert s.fp == [0, 1] and s.tp == [1, 1]
    assert s.per_class_pq == pytest.approx([6 / 8, 1 / 1.5])


def test_crowd_regions():
    gt = np.array([[3, 3, 3, 3], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    gt_segs = [seg(1, 0), seg(3, 1, iscrowd=1)]
    # A thing over its own class's crowd: neither FP, nor TP; the crowd is no FN either.
    pred = np.array([[7, 7, 7, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]])
    s = one(pred, [seg(5, 0), seg(7, 1)], gt, gt_segs)
    assert (s.tp, s.fp, s.fn) == ([1, 0], [0, 0], [0, 0])
    assert math.isnan(s.per_class_pq[1]) and math.isnan(s.pq_things) and s.thing_classes == 0
    assert s.pq == pytest.approx(12 / 13)
    # A segment of another class over the crowd is a false positive.
    s = one(pred, [seg(5, 0), seg(7, 2)], gt, gt_segs, num_classes=3, things=(1, 2))
    assert s.fp == [0, 0, 1] and s.fn == [0, 0, 0]
    # Crowd and void together make up "more than half".
    gt2 = np.array([[3, 3, 0, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1]])
    pred2 = np.array([[5, 7, 7, 7], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]])  # 7: 1 crowd + 1 void of 3
    s = one(pred2, [seg(5, 0), seg(7, 1)], gt2, gt_segs)
    assert s.fp == [0, 0]


def test_segments_are_matched_within_each_image_only():
    ev = PanopticEvaluator(2, [1])
    ev.add(GT_ROW, GT_ROW_SEGS, GT_ROW, GT_ROW_SEGS)
    pred = np.full((4, 4), 1)
    ev.add(pred, [seg(1, 0)], GT_ROW, GT_ROW_SEGS)  # same ids, second image: the thing is a FN there
    s = ev.scores()
    assert (s.tp, s.fp, s.fn, s.images) == ([2, 1], [0, 0], [0, 1], 2)
    assert s.per_class_pq == pytest.approx([(1 + 12 / 16) / 2, 1 / 1.5])


def test_model_segment_table_and_batch():
    from edgeseg.ops.paste import SEGMENT_FIELDS

    assert SEGMENT_FIELDS == ("id", "category", "is_thing", "area", "score")
    pred = np.array([[7, 7, 7, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]], np.int32)
    table = np.zeros((4, 5), np.float32)  # id, category, is_thing, area, score; rows with id 0 are padding
    table[0] = (5, 0, 0, 13, 1.0)
    table[2] = (7, 1, 1, 3, 0.9)
    table[3] = (6, 1, 1, 0, 0.8)  # listed but without pixels: takes no part
    assert [s["id"] for s in segments_from_table(table)] == [5, 7, 6]
    want = one(pred, [seg(5, 0), seg(7, 1)], GT_ROW, GT_ROW_SEGS)
    assert one(pred, table, GT_ROW, GT_ROW_SEGS) == want
    ev = PanopticEvaluator(2, [1])
    padded = np.zeros((2, 5, 6), np.int32)  # a batch padded beyond the 4×4 ground truth
    padded[:, :4, :4] = pred
    ev.add_batch(padded, np.stack([table, table]), [(GT_ROW, GT_ROW_SEGS)] * 2)
    s = ev.scores()
    assert s.tp == [2, 2] and s.pq == pytest.approx(want.pq)


def test_bad_inputs_are_refused():
    ev = PanopticEvaluator(2, [1])
    with pytest.raises(ValueError, match=r"\[9\]"):
        ev.add(np.full((4, 4), 9), [seg(5, 0)], GT_ROW, GT_ROW_SEGS)
    with pytest.raises(ValueError, match="is_thing"):
        ev.add(GT_ROW, [{"id": 1, "category": 0, "is_thing": 1}, seg(2, 1)], GT_ROW, GT_ROW_SEGS)
    with pytest.raises(ValueError, match="category 5"):
        ev.add(GT_ROW, [seg(1, 5), seg(2, 1)], GT_ROW, GT_ROW_SEGS)
    with pytest.raises(ValueError, match="twice"):
        ev.add(GT_ROW, [seg(1, 0), seg(1, 0), seg(2, 1)], GT_ROW, GT_ROW_SEGS)
    with pytest.raises(ValueError, match="same H×W"):
        ev.add(GT_ROW[:3], GT_ROW_SEGS, GT_ROW, GT_ROW_SEGS)
    with pytest.raises(ValueError, match="thing classes"):
        PanopticEvaluator(2, [2])
    assert ev.images == 0 and math.isnan(ev.scores().pq) and "n/a" in ev.scores().line()


# --- against torchmetrics ---------------------------------------------------------------------------------

NUM_CLASSES = 6
THINGS = (3, 4, 5)
STUFF = (0, 1, 2)


def paint(rng, h, w, blocks, rects, stuff_ids=True):
    """An id map and its table: stuff by a coarse block grid of stuff classes (one segment per class, id 1 + class),
    then thing rectangles (x, y, w, h, class) painted in order, ids 10, 11, ..."""
    bh, bw = blocks.shape
    stuff = np.kron(blocks, np.ones((h // bh, w // bw), np.int64))
    ids = stuff + 1
    segs = [seg(1 + c, c) for c in np.unique(stuff)]
    for k, (x, y, rw, rh, c) in enumerate(rects):
        ids[y:y + rh, x:x + rw] = 10 + k
        segs.append(seg(10 + k, c))
    return ids, segs


def random_pair(rng, h=48, w=64):
    blocks = rng.choice(STUFF, size=(4, 4))
    rects = [(int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8)), int(rng.integers(4, 20)),
              int(rng.integers(4, 20)), int(rng.choice(THINGS))) for _ in range(rng.integers(1, 6))]
    gt_ids, gt_segs = paint(rng, h, w, blocks, rects)
    void = np.zeros((h, w), bool)
    for _ in range(rng.integers(0, 3)):
        y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
        void[y:y + rng.integers(2, 14), x:x + rng.integers(2, 14)] = True
    gt_ids[void] = 0
    gt_segs = [s for s in gt_segs if (gt_ids == s["id"]).any()]

    p_blocks = np.where(rng.random(blocks.shape) < 0.25, rng.choice(STUFF, size=blocks.shape), blocks)
    p_rects = []
    for x, y, rw, rh, c in rects:
        if rng.random() < 0.15:
            continue  # missed
        dx, dy = (int(v) for v in rng.integers(-rw // 2, rw // 2 + 1, size=2))
        c = int(rng.choice(THINGS)) if rng.random() < 0.15 else c
        p_rects.append((max(x + dx, 0), max(y + dy, 0), max(rw + int(rng.integers(-3, 4)), 1), rh, c))
    for _ in range(rng.integers(0, 3)):  # spurious detections
        p_rects.append((int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8)), int(rng.integers(2, 12)),
                        int(rng.integers(2, 12)), int(rng.choice(THINGS))))
    pred_ids, pred_segs = paint(rng, h, w, p_blocks, p_rects)
    # Prediction void only where the ground truth is void: there COCO and torchmetrics agree (see below).
    pred_ids[void & (rng.random((h, w)) < 0.5)] = 0
    return pred_ids, pred_segs, gt_ids, gt_segs  # pred_segs may list segments without pixels


def torchmetrics_pair(ids, segs, num_classes=NUM_CLASSES):
    """(H, W, 2) of (category, instance) for torchmetrics; void (id 0) as a category outside things ∪ stuffs."""
    import torch

    ids = np.asarray(ids)
    cat = np.full(ids.shape, num_classes, np.int64)
    for s in segs:
        cat[ids == s["id"]] = s["category"]
    return torch.from_numpy(np.stack([cat, ids.astype(np.int64)], -1))


def test_random_scenes_agree_with_torchmetrics():
    """The same quantity from both. Where the conventions differ, the scenes stay where they agree:
    - torchmetrics merges every stuff category into one segment per image (it zeroes stuff instance ids):
      the scenes have one segment per stuff class, as COCO ground truth and the model contract do;
    - torchmetrics takes prediction-void pixels out of a ground-truth segment's union and does not count a
      ground-truth segment that is mostly predicted void as a FN; COCO (and edgeseg) count both: the scenes
      predict void only over ground-truth void;
    - torchmetrics has no crowd regions (tested by hand above);
    - void is a special category in torchmetrics (an id outside things ∪ stuffs, allow_unknown_preds_category),
      id 0 here. Both average PQ/SQ/RQ over the classes with TP + FP + FN > 0, SQ = 0 where TP = 0."""
    torchmetrics = pytest.importorskip("torchmetrics.detection")


    rng = np.random.default_rng(0)
    ev = PanopticEvaluator(NUM_CLASSES, THINGS)
    kw = dict(things=set(THINGS), stuffs=set(STUFF), allow_unknown_preds_category=True, return_sq_and_rq=True)
    tm = torchmetrics.PanopticQuality(**kw, return_per_class=True)
    overall = torchmetrics.PanopticQuality(**kw)
    for _ in range(25):
        pred_ids, pred_segs, gt_ids, gt_segs = random_pair(rng)
        ev.add(pred_ids, pred_segs, gt_ids, gt_segs)
        pair = torchmetrics_pair(pred_ids, pred_segs)[None], torchmetrics_pair(gt_ids, gt_segs)[None]
        tm.update(*pair)
        overall.update(*pair)
    s = ev.scores()
    # rows: things sorted, then stuff sorted. torchmetrics divides in float32: agreement to 1e-6, not 1e-12.
    per_class = tm.compute().double().numpy()
    order = sorted(THINGS) + sorted(STUFF)
    counts = [tm.true_positives, tm.false_positives, tm.false_negatives]
    for row, c in enumerate(order):
        assert [int(t[row]) for t in counts] == [s.tp[c], s.fp[c], s.fn[c]], c
        assert [s.per_class_pq[c], s.per_class_sq[c], s.per_class_rq[c]] == pytest.approx(per_class[row], abs=1e-6)
    assert sum(s.tp) > 20 and sum(s.fp) > 5 and sum(s.fn) > 5  # a mix, not a degenerate case
    present = (tm.true_positives + tm.false_positives + tm.false_negatives > 0).numpy()
    is_thing = np.array([c in THINGS for c in order])
    for group, (pq, sq, rq) in ((np.ones_like(is_thing), (s.pq, s.sq, s.rq)),
                                (is_thing, (s.pq_things, s.sq_things, s.rq_things)),
                                (~is_thing, (s.pq_stuff, s.sq_stuff, s.rq_stuff))):
        want = per_class[present & group].mean(0)
        assert [pq, sq, rq] == pytest.approx(want, abs=1e-6)
    assert [s.pq, s.sq, s.rq] == pytest.approx(overall.compute().double().numpy(), abs=1e-6)
    print(f"edgeseg PQ/SQ/RQ {s.pq:.6f}/{s.sq:.6f}/{s.rq:.6f}, torchmetrics {overall.compute().tolist()}, "
          f"TP/FP/FN {sum(s.tp)}/{sum(s.fp)}/{sum(s.fn)}")



HAND = {  # the hand-built 4×4 cases above that torchmetrics can express (no crowd, no prediction void on a segment)
    "iou_half": ([[7, 7, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]], [seg(5, 0), seg(7, 1)], GT_ROW, GT_ROW_SEGS),
    "iou_3/4": ([[7, 7, 7, 5], [5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]], [seg(5, 0), seg(7, 1)], GT_ROW, GT_ROW_SEGS),
    # (test_wrong_category_and_unmatched_segments predicts two class-0 segments: torchmetrics would merge them)
    "unmatched": ([[5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5], [9, 9, 5, 5]], [seg(5, 0), seg(9, 1)], GT_ROW, GT_ROW_SEGS),
    "void_union": ([[7, 7, 7, 7], [7, 7, 7, 7], [5, 5, 5, 5], [5, 5, 5, 5]], [seg(5, 0), seg(7, 1)], GT_VOID, GT_VOID_SEGS),
    "void_fp": ([[7, 7, 0, 8], [7, 7, 0, 8], [5, 5, 5, 8], [5, 5, 5, 8]], [seg(5, 0), seg(7, 1), seg(8, 1)],
                GT_VOID, GT_VOID_SEGS),
    "void_not_fp": ([[7, 7, 0, 8], [7, 7, 0, 8], [5, 5, 5, 8], [5, 5, 5, 5]], [seg(5, 0), seg(7, 1), seg(8, 1)],
                    GT_VOID, GT_VOID_SEGS),
}


@pytest.mark.parametrize("case", sorted(HAND))
def test_hand_cases_agree_with_torchmetrics(case):
    torchmetrics = pytest.importorskip("torchmetrics.detection")
    pred_ids, pred_segs, gt_ids, gt_segs = HAND[case]
    s = one(pred_ids, pred_segs, gt_ids, gt_segs)
    tm = torchmetrics.PanopticQuality(things={1}, stuffs={0}, allow_unknown_preds_category=True,
                                      return_sq_and_rq=True, return_per_class=True)
    tm.update(torchmetrics_pair(pred_ids, pred_segs, 2)[None], torchmetrics_pair(gt_ids, gt_segs, 2)[None])
    per_class = tm.compute().double().numpy()  # rows: thing 1, stuff 0
    assert [int(t[0]) for t in (tm.true_positives, tm.false_positives, tm.false_negatives)] == [s.tp[1], s.fp[1], s.fn[1]]
    assert [s.per_class_pq[1], s.per_class_sq[1], s.per_class_rq[1]] == pytest.approx(per_class[0], abs=1e-6)
    assert [s.per_class_pq[0], s.per_class_sq[0], s.per_class_rq[0]] == pytest.approx(per_class[1], abs=1e-6)


def test_scores_the_panoptic_paste_output():
    """The model contract end to end: ops.panoptic_paste's id map and S×5 table go straight in."""
    import torch

    from edgeseg.ops import panoptic_paste

    semantic = torch.full((8, 10), 3)  # classes 0, 1 things (panoptic_paste's convention), 2, 3 stuff
    semantic[:, 6:] = 2
    masks = torch.zeros(3, 8, 10)
    masks[0, 1:5, 1:5] = 1  # a thing of class 0
    masks[1, 5:8, 6:9] = 1  # a thing of class 1
    masks[2, 0:2, 8:10] = 1  # below the score threshold: dropped
    ids, table = panoptic_paste(semantic, masks, torch.tensor([0.9, 0.8, 0.1]), torch.tensor([0, 1, 1]),
                                num_classes=4, num_thing_classes=2, min_stuff_area=1)
    gt = np.full((8, 10), 1)
    gt[:, 6:] = 2
    gt[1:5, 1:5] = 3
    gt[5:8, 6:8] = 4  # the class-1 thing's ground truth is 6 pixels; the prediction 9: IoU 6/9
    gt_segs = [seg(1, 3), seg(2, 2), seg(3, 0), seg(4, 1)]
    ev = PanopticEvaluator(4, [0, 1])
    ev.add_batch(ids[None].numpy(), table[None].numpy(), [(gt, gt_segs)])
    s = ev.scores()
    assert (s.tp, s.fp, s.fn) == ([1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0])
    assert s.per_class_pq == pytest.approx([1.0, 6 / 9, 23 / 26, 1.0])  # class 2: 23 predicted of its 26
