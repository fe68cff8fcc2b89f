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


# --- coco-panoptic:<images dir>,<panoptic json>,<png dir> ---------------------------------------------------


def _write_coco_panoptic(root, h=6, w=8):
    """Two images; segment ids above 255 so that G and B carry bits."""
    import json

    from PIL import Image

    (root / "img").mkdir()
    (root / "png").mkdir()
    cats = [{"id": 17, "name": "sky", "isthing": 0}, {"id": 3, "name": "car", "isthing": 1},
            {"id": 40, "name": "person", "isthing": 1}]
    ids_a = np.zeros((h, w), np.int64)
    ids_a[:3] = 70000          # sky (stuff)
    ids_a[3:, :3] = 300        # a car
    ids_a[3:, 4:6] = 1000      # a person
    ids_a[4:, 6:] = 65536 * 2 + 5  # a crowd of people
    ids_b = np.full((h, w), 70000)  # (row 5 stays void)
    ids_b[5] = 0
    segs_a = [{"id": 70000, "category_id": 17, "iscrowd": 0}, {"id": 300, "category_id": 3, "iscrowd": 0},
              {"id": 1000, "category_id": 40}, {"id": 65536 * 2 + 5, "category_id": 40, "iscrowd": 1}]
    segs_b = [{"id": 70000, "category_id": 17, "iscrowd": 0}]
    images, anns = [], []
    for k, (ids, segs) in enumerate([(ids_a, segs_a), (ids_b, segs_b)], start=1):
        Image.fromarray(np.full((h, w, 3), 40 * k, np.uint8)).save(root / "img" / f"{k}.jpg")
        rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
        Image.fromarray(rgb).save(root / "png" / f"{k}.png")
        images.append({"id": k, "file_name": f"{k}.jpg", "width": w, "height": h})
        anns.append({"image_id": k, "file_name": f"{k}.png", "segments_info": segs})
    data = {"images": images, "annotations": anns, "categories": cats}
    (root / "pan.json").write_text(json.dumps(data))
    return data, ids_a


def test_coco_panoptic_reader(tmp_path):
    import json

    data, ids_a = _write_coco_panoptic(tmp_path)
    spec = f"coco-panoptic:{tmp_path / 'img'},{tmp_path / 'pan.json'},{tmp_path / 'png'}"
    ds = get_dataset(spec, "val")
    assert len(ds) == 2 and ds.info.class_names == ("car", "sky", "person")  # category id order
    assert ds.info.thing_classes == (0, 2)
    ids, segments = ds.panoptic(0)
    assert ids.dtype == np.int32 and np.array_equal(ids, ids_a)  # R + 256·G + 256²·B
    assert [(s["id"], s["category"], s["is_thing"], s["iscrowd"], s["area"]) for s in segments] == [
        (70000, 1, 0, 0, 24), (300, 0, 1, 0, 9), (1000, 2, 1, 0, 6), (131077, 2, 1, 1, 4)]
    mask = ds.masks[0]
    assert (mask[:3] == 1).all() and (mask[3:, :3] == 0).all() and (mask[3:, 4:6] == 2).all()
    assert (mask[4:, 6:] == IGNORE_INDEX).all() and (mask[3, 3] == IGNORE_INDEX)  # crowd and void
    assert set(np.unique(ds.instances[0]).tolist()) == {0, 1, 2}  # car and person; the crowd is no instance
    x, y = ds[1]
    assert x.shape == (3, 6, 8) and (y[5] == IGNORE_INDEX).all()
    # The file's ground truth scores perfectly against itself, crowd included.
    ev = PanopticEvaluator(3, ds.info.thing_classes)
    for i in range(len(ds)):
        ev.add(*ds.panoptic(i), *ds.panoptic(i))
    assert ev.scores().pq == 1.0

    def refused(edit, match):
        bad = json.loads(json.dumps(data))
        edit(bad)
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(DataError, match=match):
            get_dataset(f"coco-panoptic:{tmp_path / 'img'},{tmp_path / 'bad.json'},{tmp_path / 'png'}")

    refused(lambda d: d["annotations"][0]["segments_info"].pop(1), r"image 1 \(1.png\): the PNG has segment ids \[300\]")
    refused(lambda d: d["annotations"][1]["segments_info"].append({"id": 5, "category_id": 3}), r"segments \[5\] are listed")
    refused(lambda d: d["annotations"][0]["segments_info"][0].update(category_id=99), "unknown category 99")
    refused(lambda d: d["annotations"][0]["segments_info"].append({"id": 300, "category_id": 3}), "300 is listed twice")
    refused(lambda d: d["annotations"].pop(1), r"images \[2\] have no panoptic annotation")
    refused(lambda d: d["annotations"][1].update(file_name="../pan.json"), "points outside")
    refused(lambda d: d["categories"][0].pop("isthing"), "isthing")
    refused(lambda d: d["images"][0].update(width=9), r"image 1 \(1.jpg\) is 8×6 but the JSON says 9×6")
    with pytest.raises(DataError, match="does not name"):
        get_dataset(f"coco-panoptic:{tmp_path / 'img'},{tmp_path / 'pan.json'}")
