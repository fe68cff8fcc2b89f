import math

import numpy as np
import pytest

from edgeseg.metrics import ConfusionMatrix


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
