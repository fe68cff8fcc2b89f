import math

import numpy as np
import pytest

from edgeseg.metrics import ConfusionMatrix, boundary_band


def test_scores_match_hand_computed_confusion_matrix():
    # truth:      0 0 1 1 2 255      prediction: 0 1 1 1 0 2
    truth = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    cm = ConfusionMatrix(3, ignore_index=255)
    cm.update(pred, truth)
    # n_ij (rows truth): class0: [1,1,0], class1: [0,2,0], class2: [1,0,0]; the ignored pixel is not counted
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    s = cm.scores()
    assert s.pixels == 5
    assert s.pixel_accuracy == pytest.approx(3 / 5)
    assert s.mean_accuracy == pytest.approx((1 / 2 + 2 / 2 + 0 / 1) / 3)
    iou = [1 / (2 + 2 - 1), 2 / (2 + 3 - 2), 0 / (1 + 0 - 0)]
    assert s.per_class_iou == pytest.approx(iou)
    assert s.miou == pytest.approx(sum(iou) / 3)
    t = [2, 2, 1]
    assert s.fw_iou == pytest.approx(sum(ti * ii for ti, ii in zip(t, iou)) / 5)


def test_streaming_equals_one_shot_and_absent_class_is_left_out():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, size=(4, 16, 16))  # class 3 never appears, never predicted
    pred = rng.integers(0, 3, size=(4, 16, 16))
    one, streamed = ConfusionMatrix(4), ConfusionMatrix(4)
    one.update(pred, truth)
    for p, t in zip(pred, truth):
        streamed.update(p, t)
    assert (one.matrix == streamed.matrix).all()
    s = one.scores()
    assert math.isnan(s.per_class_iou[3])
    assert s.miou == pytest.approx(np.mean(s.per_class_iou[:3]))


def test_all_ignored_and_out_of_range_labels():
    cm = ConfusionMatrix(2)
    cm.update(np.zeros((2, 2)), np.full((2, 2), 255))
    assert cm.scores().pixels == 0 and math.isnan(cm.scores().miou)
    with pytest.raises(ValueError, match="target class"):
        cm.update(np.zeros(3), np.array([0, 1, 7]))


def test_boundary_band_of_a_straight_edge_and_of_one_pixel():
    # columns 0-2 class 0, columns 3-5 class 1: the edge pixels are columns 2 and 3, each width adds a column a side
    halves = np.repeat([[0, 0, 0, 1, 1, 1]], 4, axis=0)
    for width, columns in ((0, [2, 3]), (1, [1, 2, 3, 4]), (2, [0, 1, 2, 3, 4, 5])):
        assert np.flatnonzero(boundary_band(halves, width)[0]).tolist() == columns
        assert (boundary_band(halves, width) == boundary_band(halves, width)[0]).all()  # every row alike
    # one pixel of class 2 at the centre of a 7×7 mask: it and its 4 neighbours are edge pixels (city distance ≤ 1),
    # one step further reaches city distance ≤ 2 (13 pixels); the ignore label counts as a label
    dot = np.zeros((7, 7), np.int64)
    dot[3, 3] = 255
    distance = np.abs(np.arange(7) - 3)[:, None] + np.abs(np.arange(7) - 3)[None]
    assert (boundary_band(dot, 0) == (distance <= 1)).all()
    assert (boundary_band(dot, 1) == (distance <= 2)).all() and boundary_band(dot, 1).sum() == 13
    assert not boundary_band(np.ones((3, 4)), 2).any()  # one class: no edge, no band
    with pytest.raises(ValueError, match="negative"):
        boundary_band(halves, -1)
