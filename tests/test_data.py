import numpy as np
import pytest
from PIL import Image

from edgeseg.data import get_dataset
from edgeseg.data.base import package_file
from edgeseg.data.lits import TRAIN_SLICES, VAL_SLICES, load_volume
from edgeseg.data.synthetic import make_scene
from edgeseg.data.transforms import TrainAugment
from edgeseg.data.weights import border_term, class_balance, unet_weight_map
from edgeseg.errors import DataError


def test_lits_real_volume_and_split_gap():
    img, lab = load_volume()
    assert img.shape == lab.shape == (128, 128, 128)
    assert 0.0 <= img.min() and img.max() <= 1.0
    assert set(np.unique(lab).tolist()) == {0, 1, 2}
    for axis in range(3):  # liver and tumour appear along every axis
        other = tuple(a for a in range(3) if a != axis)
        assert (lab == 1).any(axis=other).sum() > 100 and (lab == 2).any(axis=other).sum() > 50
    train, val = get_dataset("lits", "train"), get_dataset("lits", "val")
    assert len(train) == TRAIN_SLICES[1] - TRAIN_SLICES[0] and len(val) == VAL_SLICES[1] - VAL_SLICES[0]
    assert VAL_SLICES[0] - TRAIN_SLICES[1] >= 2  # no validation slice neighbours a training slice
    x, y = train[0]
    assert x.shape == (1, 128, 128) and y.shape == (128, 128)
    assert np.array_equal(val.raw(0)[1], lab[VAL_SLICES[0]])


def test_lits_extra_axes_stay_inside_the_training_slab():
    ds = get_dataset("lits", "train", extra_axes=True)
    _, lab = load_volume()
    slab = lab[TRAIN_SLICES[0] : TRAIN_SLICES[1]]
    assert len(ds) == 96 + 2 * 128
    assert np.array_equal(ds.raw(96)[1], slab[:, 0, :])
    assert all(m.shape[0] in (96, 128) for m in ds.masks)


def test_lits_slice_context_borrows_images_never_labels():
    img, lab = load_volume()
    val = get_dataset("lits", "val", context=2)
    assert val.info.in_channels == 5
    image, mask = val.raw(0)
    assert np.array_equal(image[0], img[VAL_SLICES[0] - 2]) and np.array_equal(image[2], img[VAL_SLICES[0]])
    assert np.array_equal(mask, lab[VAL_SLICES[0]])
    train = get_dataset("lits", "train", context=2)
    assert np.array_equal(train.raw(0)[0][0], img[0])  # the volume's edge repeats
    assert np.array_equal(train.raw(95)[0][4], img[97])  # inside the gap, never a validation slice
    with pytest.raises(DataError, match="context 4 is out of range"):
        get_dataset("lits", "val", context=4)


def test_nuclei_real_image_regions_are_disjoint():
    train, val = get_dataset("nuclei", "train"), get_dataset("nuclei", "val")
    assert len(train) > 0 and len(val) > 0
    assert set(np.unique(np.concatenate([m.ravel() for m in train.masks])).tolist()) == {0, 1}
    assert max(i.max() for i in train.instances) > 10  # instance ids are kept
    assert all((m == (i > 0)).all() for m, i in zip(val.masks, val.instances))


def test_synthetic_is_deterministic_with_stuff_and_things():
    a = make_scene(3, 64, 80, 5)
    b = make_scene(3, 64, 80, 5)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    ds = get_dataset("synthetic", "train", num_images=8, size=(64, 64), num_classes=5)
    assert len(ds) == 8 and ds.info.in_channels == 3
    classes = set(np.unique(np.concatenate([m.ravel() for m in ds.masks])).tolist())
    assert classes & {0, 1} and classes & {2, 3, 4}
    assert any(i.max() > 0 for i in ds.instances)
    assert not np.array_equal(get_dataset("synthetic", "val", num_images=1).raw(0)[0],
                              get_dataset("synthetic", "train", num_images=1).raw(0)[0])


def _write_folder(root, n=2, size=(40, 48)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nthing\n")
    for i in range(n):
        Image.fromarray(np.full((*size, 3), 60 * i, np.uint8)).save(root / "images" / f"im{i}.jpg")
        mask = np.zeros(size, np.uint8)
        mask[5:20, 5:20] = 1
        mask[0, 0] = 255
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")


def test_folder_dataset(tmp_path):
    _write_folder(tmp_path / "d")
    ds = get_dataset(f"folder:{tmp_path / 'd'}")
    assert ds.info.class_names == ("background", "thing")
    img, mask = ds.raw(1)
    assert img.shape == (3, 40, 48) and mask[0, 0] == 255 and mask[10, 10] == 1


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        get_dataset(f"folder:{tmp_path / 'missing'}")
    _write_folder(tmp_path / "d")
    (tmp_path / "d" / "masks" / "im0.png").unlink()
    with pytest.raises(DataError, match="no mask for im0"):
        get_dataset(f"folder:{tmp_path / 'd'}")
    _write_folder(tmp_path / "e")
    Image.fromarray(np.full((40, 48), 7, np.uint8)).save(tmp_path / "e" / "masks" / "im1.png")
    with pytest.raises(DataError, match="class index 7"):
        get_dataset(f"folder:{tmp_path / 'e'}")
    (tmp_path / "f" / "images").mkdir(parents=True)
    (tmp_path / "f" / "classes.txt").write_text("a\nb\n")
    (tmp_path / "f" / "images" / "x.png").write_bytes(b"not a png at all")
    (tmp_path / "f" / "masks").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "f" / "masks" / "x.png")
    with pytest.raises(DataError, match="not a readable image"):
        get_dataset(f"folder:{tmp_path / 'f'}")


def test_missing_data_package_names_the_fix():
    with pytest.raises(DataError, match="pip install --no-deps nothing-here"):
        package_file("edgeseg-no-such-data-package", "x.mrc", "pip install --no-deps nothing-here")
    with pytest.raises(DataError, match="unknown data set"):
        get_dataset("voc")


def test_augment_keeps_image_and_mask_aligned():
    image = np.zeros((1, 64, 64), np.float32)
    image[0, 10:30, 20:40] = 1.0
    mask = (image[0] > 0.5).astype(np.int64)
    import torch

    aug = TrainAugment(crop=48, scale=(0.8, 1.2), vflip=True, seed=3)
    for _ in range(10):
        x, y = aug(torch.from_numpy(image), torch.from_numpy(mask))
        assert x.shape == (1, 48, 48) and y.shape == (48, 48)
        valid = y != 255
        assert ((x[0] > 0.5) == (y == 1))[valid].float().mean() > 0.97


def test_unet_weight_map_follows_the_paper():
    objects = np.zeros((40, 40), np.int64)
    objects[5:15, 5:35] = 1
    objects[17:30, 5:35] = 2  # two objects 2 px apart: a high border weight between them
    mask = (objects > 0).astype(np.int64)
    balance = class_balance([mask], 2)
    assert balance[0] > 0 and balance[1] > 0
    border = border_term(objects)
    # between the objects d1 + d2 ≈ 3 -> w0·exp(-9/50) ≈ 8.4; far away it vanishes
    assert border[16, 20] == pytest.approx(10 * np.exp(-((1 + 2) ** 2) / 50), rel=1e-4)
    assert border[38, 20] < 0.5
    w = unet_weight_map(mask, balance, objects)
    assert w[16, 20] > w[38, 20] and w.min() > 0


def test_lits_tumour_components_are_instances():
    from scipy import ndimage

    val = get_dataset("lits", "val")
    assert sum(int(i.max()) for i in val.instances) > 0
    for m, ids in zip(val.masks, val.instances):
        assert ((ids > 0) == (m == 2)).all()  # every tumour pixel is in an instance, nothing else is
        for k in range(1, int(ids.max()) + 1):  # each instance is one connected piece
            assert ndimage.label(ids == k, structure=np.ones((3, 3)))[1] == 1


def _write_coco(root, annotations=None, images=None, categories=None):
    """Two images: a polygon square, an uncompressed-RLE blob, a compressed-RLE disc, a crowd region."""
    import json

    from pycocotools import mask as mask_utils

    (root / "img").mkdir(parents=True, exist_ok=True)
    for name, (h, w) in (("a.jpg", (30, 40)), ("b.png", (24, 20))):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "img" / name)
    disc = np.zeros((24, 20), np.uint8)
    disc[np.hypot(*np.mgrid[0:24, 0:20] - np.array([12, 10])[:, None, None]) < 5] = 1
    compressed = mask_utils.encode(np.asfortranarray(disc))
    crowd = np.zeros((24, 20), np.uint8)
    crowd[0:4, 0:6] = 1
    runs = mask_utils.encode(np.asfortranarray(crowd))
    blob = np.zeros((30, 40), np.uint8)
    blob[20:28, 25:38] = 1
    flat = blob.ravel(order="F")
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    data = {
        "images": images or [{"id": 7, "file_name": "a.jpg", "height": 30, "width": 40},
                             {"id": 9, "file_name": "b.png", "height": 24, "width": 20}],
        "categories": categories or [{"id": 3, "name": "cell"}, {"id": 1, "name": "cat"}],
        "annotations": annotations or [
            {"id": 1, "image_id": 7, "category_id": 3, "iscrowd": 0, "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
            {"id": 2, "image_id": 7, "category_id": 1, "iscrowd": 0, "segmentation": {"size": [30, 40], "counts": counts}},
            {"id": 3, "image_id": 9, "category_id": 1, "iscrowd": 0,
             "segmentation": {"size": [24, 20], "counts": compressed["counts"].decode()}},
            {"id": 4, "image_id": 9, "category_id": 3, "iscrowd": 1,
             "segmentation": {"size": [24, 20], "counts": runs["counts"].decode()}},
        ],
    }
    (root / "ann.json").write_text(json.dumps(data))
    return f"coco:{root / 'img'},{root / 'ann.json'}", blob, disc, crowd


def test_coco_instances_polygons_and_rle(tmp_path):
    spec, blob, disc, crowd = _write_coco(tmp_path)
    ds = get_dataset(spec)
    assert ds.info.class_names == ("background", "cat", "cell")  # categories in id order: labels 1, 2
    assert ds.info.in_channels == 3 and len(ds) == 2
    img, mask = ds.raw(0)
    ids = ds.instances[0]
    assert img.shape == (3, 30, 40) and int(ids.max()) == 2
    assert (mask[blob == 1] == 1).all() and (mask[3:12, 3:12] == 2).all() and mask[0, 0] == 0
    assert len(np.unique(ids[blob == 1])) == 1 and len(np.unique(ids[3:12, 3:12])) == 1
    _, mask = ds.raw(1)
    assert ((ds.instances[1] > 0) == (disc == 1)).all() and (mask[disc == 1] == 1).all()
    assert (mask[(crowd == 1) & (disc == 0)] == 255).all()  # a crowd region is ignored, not an instance
    assert ds.info.thing_classes == (1, 2)  # panoptic view: every instance category is a thing
    ids0, segments = ds.panoptic(0)
    assert sorted(s["category"] for s in segments if s["is_thing"]) == [1, 2] and ids0.shape == (30, 40)


@pytest.mark.parametrize("case,match", [
    ("missing image", "image 9: .* is missing"),
    ("empty polygon", "annotation 1 \\(image 7\\) has an empty or degenerate polygon"),
    ("unknown category", "annotation 1 \\(image 7\\) has unknown category 5"),
    ("unknown image", "annotation 1 refers to image 8"),
    ("RLE overrun", "annotation 2 \\(image 7\\): its RLE runs do not cover"),
    ("broken string", "annotation 3 \\(image 9\\): its compressed RLE"),
    ("far polygon", "annotation 1 \\(image 7\\) has polygon points far outside"),
    ("escaping file name", "points outside"),
    ("not COCO", "not a COCO instances file"),
])
def test_coco_bad_records_are_named(tmp_path, case, match):
    import json

    spec, *_ = _write_coco(tmp_path)
    data = json.loads((tmp_path / "ann.json").read_text())
    anns = data["annotations"]
    if case == "missing image":
        (tmp_path / "img" / "b.png").unlink()
    elif case == "empty polygon":
        anns[0]["segmentation"] = [[]]
    elif case == "unknown category":
        anns[0]["category_id"] = 5
    elif case == "unknown image":
        anns[0]["image_id"] = 8
    elif case == "RLE overrun":  # pycocotools would write past its buffer
        anns[1]["segmentation"]["counts"] = anns[1]["segmentation"]["counts"] + [10_000]
    elif case == "broken string":
        anns[2]["segmentation"]["counts"] = "\x7f\x7f"
    elif case == "far polygon":
        anns[0]["segmentation"] = [[0, 0, 1e12, 0, 5, 5]]
    elif case == "escaping file name":
        data["images"][0]["file_name"] = "../ann.json"
    elif case == "not COCO":
        data = {"images": {}}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=match):
        get_dataset(spec)


def test_coco_trains_and_evaluates_an_instance_model(tmp_path):
    """coco: through `edgeseg train` and `edgeseg eval` (box and mask AP lines, exit 0)."""
    import subprocess
    import sys

    spec, *_ = _write_coco(tmp_path)
    run = [sys.executable, "-m", "edgeseg"]
    args = ["--model-arg", "proposals=20", "--model-arg", "max_detections=5"]
    r = subprocess.run(run + ["train", "maskrcnn_resnet18_fpn", "--data", spec, "--iterations", "1", "--batch-size", "2",
                              "--crop", "32", "--out", str(tmp_path / "m.pt")] + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(run + ["eval", str(tmp_path / "m.pt"), "--data", spec], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "mask AP" in r.stdout and "box  AP" in r.stdout
