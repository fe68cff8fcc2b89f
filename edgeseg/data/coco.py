"""A user's COCO-format instance set: ``coco:<images dir>,<instances.json>[,<val instances.json>]``.

Polygons and RLE (compressed or not) are decoded with pycocotools. Classes are ``background`` plus the
JSON's categories in id order (labels 1..K). Each image gives an instance id map (1..n; where annotations
overlap, the smaller one is drawn on top so every instance keeps pixels) and the semantic mask of their
classes. Crowd annotations are not instances: their pixels are ``IGNORE_INDEX`` in the semantic mask.

With one JSON both splits read it; with two, ``train`` reads the first and ``val`` the second.
An annotation that cannot be used (missing image, empty polygon, unknown category, ...) is refused with
one line naming the record, before any image is decoded.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from edgeseg import budgets
from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, SegDataset
from edgeseg.data.folder import IMAGENET_MEAN, IMAGENET_STD, load_image
from edgeseg.errors import DataError

SPEC = "coco:<images dir>,<instances.json>[,<val instances.json>]"


def coco(spec: str, split: str = "train", transform=None, max_pixels: int | None = None) -> SegDataset:
    parts = [p for p in spec.split(",") if p]
    if len(parts) not in (2, 3):
        raise DataError(f"'coco:{spec}' does not name an images folder and a JSON", f"write {SPEC}")
    if split not in ("train", "val"):
        raise DataError(f"unknown split '{split}'", "use 'train' or 'val'")
    images_dir = Path(parts[0])
    ann_path = Path(parts[2] if split == "val" and len(parts) == 3 else parts[1])
    if not images_dir.is_dir():
        raise DataError(f"COCO images folder not found: {images_dir}", f"write {SPEC}")
    records, categories = _read_annotations(ann_path, images_dir)
    label_of = {cid: i + 1 for i, cid in enumerate(sorted(categories))}
    info = DatasetInfo(name=f"coco:{ann_path.name}", class_names=("background",) + tuple(categories[c] for c in sorted(categories)),
                       in_channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       thing_classes=tuple(range(1, len(categories) + 1)))  # instance annotations: every category a thing
    images, masks, instances = [], [], []
    for image, anns in records:
        h, w = image["height"], image["width"]
        pixels = load_image(images_dir / image["file_name"], 3, max_pixels)
        if pixels.shape[1:] != (h, w):
            raise DataError(f"{ann_path.name}: image {image['id']} ({image['file_name']}) is {pixels.shape[2]}×{pixels.shape[1]} "
                            f"but the JSON says {w}×{h}", "fix the record's width/height or the image")
        ids = np.zeros((h, w), np.int64)
        semantic = np.zeros((h, w), np.int64)
        decoded = [(a, _decode(a, h, w, ann_path.name)) for a in anns]
        crowd = np.zeros((h, w), bool)
        k = 0
        for a, m in sorted(decoded, key=lambda am: -int(am[1].sum())):  # large first: smaller ones end on top
            if a.get("iscrowd", 0):
                crowd |= m
                continue
            k += 1
            ids[m] = k
            semantic[m] = label_of[a["category_id"]]
        semantic[crowd & (ids == 0)] = IGNORE_INDEX
        images.append(pixels)
        masks.append(semantic)
        instances.append(ids)
    ds = SegDataset(info, images, masks, transform)
    ds.instances = instances
    # the JSON's own records, image by image: evaluation scores against them through pycocotools, as the papers'
    # numbers are (the id maps above redraw overlapping polygons), and results carry the JSON's image ids
    ds.coco = {"images": [image for image, _ in records], "annotations": [anns for _, anns in records], "label_of": label_of}
    return ds


def _read_annotations(path: Path, images_dir: Path) -> tuple[list[tuple[dict, list[dict]]], dict[int, str]]:
    """(image record, its annotations) per image, and category id -> name; every record checked."""
    data = read_coco_json(path, "instances", SPEC)
    name = path.name
    categories: dict[int, str] = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or not is_int(c.get("id")) or not isinstance(c.get("name"), str):
            raise DataError(f"{name}: category {str(c)[:60]} needs an integer 'id' and a 'name'", "fix the categories list")
        if c["id"] in categories:
            raise DataError(f"{name}: category id {c['id']} is listed twice", "give each category its own id")
        categories[c["id"]] = c["name"]
    if not categories:
        raise DataError(f"{name} lists no categories", "add the categories the annotations use")
    if len(categories) > 254:
        raise DataError(f"{name} lists {len(categories)} categories", "edgeseg's masks hold at most 254 classes besides background")
    images = read_image_records(data, name, images_dir)
    per_image: dict[int, list[dict]] = {i: [] for i in images}
    # what the data set keeps (float RGB, instance ids, classes) and, while one image is read, its decoded masks
    tally = budgets.Tally("bytes", f"{name}: the data set in memory")
    for i, im in images.items():
        tally.add(im["width"] * im["height"] * 29, f"image {i}")
    for a in data["annotations"]:
        aid = a.get("id", "?") if isinstance(a, dict) else "?"
        if not isinstance(a, dict) or not is_int(a.get("image_id")) or a.get("image_id") not in images:
            raise DataError(f"{name}: annotation {aid} refers to image {a.get('image_id') if isinstance(a, dict) else None}, "
                            "which is not in 'images'", "fix its image_id or drop it")
        if not is_int(a.get("category_id")) or a["category_id"] not in categories:  # a list is unhashable
            raise DataError(f"{name}: annotation {aid} (image {a['image_id']}) has unknown category {a.get('category_id')!r}",
                            "use a category id listed in 'categories'")
        _check_segmentation(a, name)
        per_image[a["image_id"]].append(a)
    for i, anns in per_image.items():
        budgets.check("annotations", len(anns), f"{name}: image {i}")
        budgets.check("bytes", tally.total + len(anns) * images[i]["width"] * images[i]["height"],
                      f"{name}: image {i}'s {len(anns)} decoded masks beside the data set")
    return [(images[i], per_image[i]) for i in sorted(images)], categories


def _check_segmentation(a: dict, name: str) -> None:
    seg = a.get("segmentation")
    where = f"{name}: annotation {a.get('id', '?')} (image {a['image_id']})"
    if isinstance(seg, list):
        if not seg or not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            raise DataError(f"{where} has an empty or degenerate polygon", "a polygon lists at least 3 x,y points")
        budgets.check("polygon_points", sum(len(p) for p in seg) // 2, f"{where}: its polygons")
        if not all(isinstance(v, (int, float)) and np.isfinite(v) for p in seg for v in p):
            raise DataError(f"{where} has a polygon with non-numeric or non-finite coordinates", "fix the polygon")
    elif isinstance(seg, dict):
        if not isinstance(seg.get("counts"), (list, str)) or not isinstance(seg.get("size"), list) or len(seg["size"]) != 2:
            raise DataError(f"{where} has an RLE without 'counts' and a 2-item 'size'", "fix the RLE")
        budgets.check("rle_counts", len(seg["counts"]), f"{where}: its RLE")  # a string holds at most one run a character
    else:
        raise DataError(f"{where} has no 'segmentation' (polygons or RLE)", "give every annotation a mask")


def _decode(a: dict, h: int, w: int, name: str) -> np.ndarray:
    from pycocotools import mask as mask_utils

    seg = a["segmentation"]
    where = f"{name}: annotation {a.get('id', '?')} (image {a['image_id']})"
    if isinstance(seg, dict) and list(seg["size"]) != [h, w]:
        raise DataError(f"{where}: its RLE is {seg['size']} but the image is {[h, w]}", "fix the RLE's size")
    if isinstance(seg, list):  # pycocotools rasterises at 5× and allocates by edge length: keep points near the image
        coords = np.concatenate([np.asarray(p, np.float64) for p in seg])
        if (np.abs(coords[0::2] - w / 2) > 1.5 * w).any() or (np.abs(coords[1::2] - h / 2) > 1.5 * h).any():
            raise DataError(f"{where} has polygon points far outside its {w}×{h} image", "fix the polygon")
        budgets.check("bytes", _raster_bytes(seg) + 2 * h * w, f"{where}: rasterising its polygons")
    else:  # pycocotools' decoder writes runs without bounds checks: they must sum to exactly h·w
        counts = seg["counts"] if isinstance(seg["counts"], list) else _rle_counts(seg["counts"], where)
        if not all(is_int(c) and c >= 0 for c in counts) or sum(counts) != h * w:
            raise DataError(f"{where}: its RLE runs do not cover the {w}×{h} image exactly", "fix the RLE")
    try:
        if isinstance(seg, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        else:
            rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation, not the user's concern
            warnings.simplefilter("ignore", DeprecationWarning)
            m = mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError, OverflowError) as e:
        raise DataError(f"{where}: its mask cannot be decoded ({type(e).__name__})", "fix the segmentation") from None
    if m.shape != (h, w):
        raise DataError(f"{where}: its mask decodes to {m.shape}, not {(h, w)}", "fix the segmentation")
    if not m.any() and not a.get("iscrowd", 0):
        raise DataError(f"{where}: its mask covers no pixel", "drop the annotation or fix its segmentation")
    return m


def _raster_bytes(polygons: list[list]) -> int:
    """What pycocotools allocates to rasterise ``polygons``: it walks every edge at 5× scale, one pair of
    4-byte ints per step plus a run per step (its allocation is unchecked: over the budget it crashes)."""
    steps = 0
    for p in polygons:
        xy = np.asarray(p, np.float64).reshape(-1, 2) * 5
        steps += int(np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(1).sum()) + len(xy)
    return 12 * steps


def _rle_counts(text: str, where: str) -> list[int]:
    """COCO's compressed RLE string -> run lengths (its format: 5 bits per character from '0' (48), 0x20
    continues a value, 0x10 in the last character is the sign; from the third run on, values are
    differences from the run two before)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = k = 0
        while True:
            if p >= len(text):
                raise DataError(f"{where}: its compressed RLE ends inside a value", "fix the RLE")
            c = ord(text[p]) - 48
            if not 0 <= c < 64 or k > 12:
                raise DataError(f"{where}: its compressed RLE is malformed", "fix the RLE")
            x |= (c & 0x1F) << (5 * k)
            p, k = p + 1, k + 1
            if not c & 0x20:
                if c & 0x10:
                    x |= -1 << (5 * k)
                break
        counts.append(x + (counts[-2] if len(counts) > 2 else 0))
    return counts


def read_coco_json(path: Path, kind: str, spec: str) -> dict:
    """A COCO ``kind`` ("instances", "panoptic") JSON with its three top-level lists checked."""
    data = budgets.read_json(path, f"COCO {kind} JSON", f"pass a COCO {kind} JSON; write {spec}")
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path} is not a COCO {kind} file (it needs lists 'images', 'annotations', 'categories')",
                        f"pass a COCO {kind} JSON")
    return data


def read_image_records(data: dict, name: str, images_dir: Path) -> dict[int, dict]:
    """Image id -> its record, each checked: integer id and size, a file inside ``images_dir`` that exists."""
    budgets.check("images", len(data["images"]), name)
    images: dict[int, dict] = {}
    for im in data["images"]:
        ok = (isinstance(im, dict) and is_int(im.get("id")) and isinstance(im.get("file_name"), str)
              and is_int(im.get("width")) and is_int(im.get("height")) and im["width"] > 0 and im["height"] > 0)
        if not ok:
            raise DataError(f"{name}: image record {str(im)[:80]} needs integer 'id', 'width', 'height' and a 'file_name'",
                            "fix the images list")
        if im["id"] in images:
            raise DataError(f"{name}: image id {im['id']} is listed twice", "give each image its own id")
        file_inside(images_dir, im["file_name"], f"{name}: image {im['id']}")
        images[im["id"]] = im
    if not images:
        raise DataError(f"{name} lists no images", "pass a JSON with images")
    return images


def file_inside(folder: Path, file_name: str, where: str) -> None:
    """Refuse a record's file name that escapes ``folder`` or names no file."""
    if not 0 < len(file_name) <= 1024 or "\0" in file_name:
        raise DataError(f"{where}: file_name {file_name[:60]!r} is empty, over 1024 characters or holds a NUL",
                        "file names are short paths relative to their folder")
    file = folder / file_name
    try:
        inside = file.resolve().is_relative_to(folder.resolve())
        exists = file.is_file()
    except (OSError, RuntimeError):  # a name too long for the file system, a symlink loop
        raise DataError(f"{where}: file_name {file_name[:60]!r} cannot be resolved (a link loop or too long)",
                        "point it at a regular file inside the folder") from None
    if not inside:
        raise DataError(f"{where}: file_name {file_name[:60]!r} points outside {folder}", "file names are relative to their folder")
    if not exists:
        raise DataError(f"{where}: {file} is missing", "put the file there or drop its record")


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def image_ids(path: str | Path) -> tuple[dict[str, int], list[int]]:
    """A COCO JSON's image file name (its last component) -> image id, and its category ids in label order (label
    k is the k-th smallest id, as ``coco`` reads them): what results for its images carry, so that pycocotools'
    ``loadRes`` against that JSON takes them."""
    path = Path(path)
    data = read_coco_json(path, "instances", SPEC)
    ids: dict[str, int] = {}
    for im in data["images"]:
        if not (isinstance(im, dict) and is_int(im.get("id")) and isinstance(im.get("file_name"), str)):
            raise DataError(f"{path.name}: image record {str(im)[:80]} needs an integer 'id' and a 'file_name'", "fix the images list")
        ids[Path(im["file_name"]).name] = im["id"]
    categories = sorted(c["id"] for c in data["categories"] if isinstance(c, dict) and is_int(c.get("id")))
    return ids, categories
