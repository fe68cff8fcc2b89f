"""Panoptic ground truth of the data sets: ``ds.panoptic(i)`` and ``ds.info.thing_classes``."""
from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import IGNORE_INDEX, DatasetInfo, SegDataset, get_dataset
from edgeseg.errors import DataError
from edgeseg.metrics import PanopticEvaluator


def check_panoptic(ds, indices) -> int:
    """Every image's ids agree with its semantic mask and instances; returns the thing segments seen."""
    things = set(ds.info.thing_classes)
    ev = PanopticEvaluator(ds.info.num_classes, things)
    seen = 0
    for i in indices:
        ids, segments = ds.panoptic(i)
        mask = np.asarray(ds.masks[i])
        inst = np.asarray(ds.instances[i])
        assert ids.dtype == np.int32 and ids.shape == mask.shape
        assert [s["id"] for s in segments] == list(range(1, len(segments) + 1))
        assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in segments}
        void = (mask == ds.info.ignore_index) | (np.isin(mask, list(things)) & (inst == 0))
        assert np.array_equal(ids == 0, void)
        stuff_seen = []
        for s in segments:
            region = ids == s["id"]
            assert s["area"] == region.sum() > 0 and s["iscrowd"] == 0
            assert (mask[region] == s["category"]).all()  # consistent with the semantic mask
            assert s["is_thing"] == (s["category"] in things)
            if s["is_thing"]:
                k = np.unique(inst[region])
                assert len(k) == 1 and k[0] > 0  # one instance ...
                assert np.array_equal(region, (inst == k[0]) & (mask == s["category"]))  # ... all of it
                seen += 1
            else:
                stuff_seen.append(s["category"])
        present_stuff = set(np.unique(mask[~void]).tolist()) - things
        assert sorted(stuff_seen) == sorted(present_stuff)  # one segment per stuff class present
        ev.add(ids, segments, ids, segments)
    s = ev.scores()
    assert s.pq == 1.0 and sum(s.fp) == sum(s.fn) == 0  # the ground truth scores perfectly against itself
    return seen


def test_synthetic_panoptic():
    ds = get_dataset("synthetic", "train", num_images=6, size=(64, 64), num_classes=5)
    assert ds.info.thing_classes == (2, 3, 4)  # the scene's band classes are stuff, the disc/box classes things
    assert check_panoptic(ds, range(len(ds))) >= 6
    assert get_dataset("synthetic", "val", num_images=1, num_classes=2).info.thing_classes == (1,)


def test_nuclei_panoptic():
    ds = get_dataset("nuclei", "val")
    assert ds.info.thing_classes == (1,) and ds.info.class_names[1] == "nucleus"
    assert check_panoptic(ds, [0, len(ds) - 1]) > 10


def test_lits_panoptic():
    ds = get_dataset("lits", "val")
    assert ds.info.thing_classes == (2,)  # tumour components; background and liver are stuff
    with_tumour = [i for i in range(len(ds)) if ds.instances[i].max() > 0]
    without = [i for i in range(len(ds)) if ds.instances[i].max() == 0]
    assert with_tumour
    assert check_panoptic(ds, with_tumour[:3] + without[:1]) >= 3
    ids, segments = ds.panoptic(with_tumour[0])
    assert {s["category"] for s in segments if not s["is_thing"]} <= {0, 1}
    assert get_dataset("lits", "val", context=1).info.thing_classes == (2,)


def test_void_and_missing_instances():
    info = DatasetInfo("toy", ("background", "road", "car"), 1, (0.5,), (0.25,), thing_classes=(2,))
    mask = np.array([[0, 0, 2, 2], [1, 1, 2, 2], [1, IGNORE_INDEX, 2, 2], [1, 1, 2, 0]])
    inst = np.array([[0, 0, 4, 4], [0, 0, 4, 7], [0, 0, 0, 7], [0, 0, 7, 0]])  # (2, 2) is a car without an instance
    ds = SegDataset(info, [np.zeros((1, 4, 4), np.float32)], [mask])
    ds.instances = [inst]
    ids, segments = ds.panoptic(0)
    assert ids.tolist() == [[1, 1, 3, 3], [2, 2, 3, 4], [2, 0, 0, 4], [2, 2, 4, 1]]
    assert [(s["category"], s["is_thing"], s["area"]) for s in segments] == [(0, 0, 3), (1, 0, 5), (2, 1, 3), (2, 1, 3)]
    assert check_panoptic(ds, [0]) == 2
    ds.instances = None
    with pytest.raises(DataError, match="no instance ids"):
        ds.panoptic(0)
    stuff_only = SegDataset(DatasetInfo("toy", ("a", "b", "c"), 1, (0.5,), (0.25,)), [np.zeros((1, 4, 4))], [mask])
    ids, segments = stuff_only.panoptic(0)  # no thing classes: one segment per class, no instances needed
    assert [s["category"] for s in segments] == [0, 1, 2] and (ids == 0).sum() == 1
