"""A user's COCO panoptic set: ``coco-panoptic:<images dir>,<panoptic json>,<png dir>``.

The JSON lists ``images``, ``categories`` (with ``isthing``) and one ``annotations`` record per image: the
file name of its segment PNG (in the PNG folder) and its ``segments_info`` (``id``, ``category_id``,
``iscrowd``). A PNG pixel's segment id is R + 256·G + 256²·B; 0 is void.

Classes are the JSON's categories in id order (labels 0..K-1, no background class: unlabelled pixels are
void); ``info.thing_classes`` those with ``isthing``. Each image gives a semantic mask (void and crowd pixels
are ``IGNORE_INDEX``), instance ids 1..n of its non-crowd thing segments (``ds.instances``), and its panoptic
ground truth as the file has it, crowd flags and segment ids included (``ds.panoptic(i)``). Both splits read
the one JSON. Every record is checked before any PNG is decoded, and every PNG against its record; a bad one
is refused with one line naming it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg import budgets
from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, SegDataset
from edgeseg.data.coco import file_inside, is_int, read_coco_json, read_image_records
from edgeseg.data.folder import IMAGENET_MEAN, IMAGENET_STD, load_image, open_within_budget
from edgeseg.errors import DataError

SPEC = "coco-panoptic:<images dir>,<panoptic json>,<png dir>"


class CocoPanopticDataset(SegDataset):
    """A ``SegDataset`` whose panoptic ground truth is read from the files, not rebuilt from masks."""

    def __init__(self, info: DatasetInfo, images, masks, instances, segment_ids, segments, transform=None):
        super().__init__(info, images, masks, transform)
        self.instances = instances
        self.segment_ids = segment_ids
        self.segments = segments

    def panoptic(self, i: int) -> tuple[np.ndarray, list[dict]]:
        return self.segment_ids[i], [dict(s) for s in self.segments[i]]


def coco_panoptic(spec: str, split: str = "train", transform=None, max_pixels: int | None = None) -> CocoPanopticDataset:
    parts = [p for p in spec.split(",") if p]
    if len(parts) != 3:
        raise DataError(f"'coco-panoptic:{spec}' does not name an images folder, a JSON and a PNG folder", f"write {SPEC}")
    if split not in ("train", "val"):
        raise DataError(f"unknown split '{split}'", "use 'train' or 'val'")
    images_dir, json_path, png_dir = Path(parts[0]), Path(parts[1]), Path(parts[2])
    for folder, what in ((images_dir, "images"), (png_dir, "panoptic PNG")):
        if not folder.is_dir():
            raise DataError(f"COCO panoptic {what} folder not found: {folder}", f"write {SPEC}")
    records, categories = _read_json(json_path, images_dir, png_dir)
    cat_ids = sorted(categories)
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    info = DatasetInfo(name=f"coco-panoptic:{json_path.name}", class_names=tuple(categories[c][0] for c in cat_ids),
                       in_channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       thing_classes=tuple(label_of[c] for c in cat_ids if categories[c][1]))
    images, masks, instances, segment_ids, tables = [], [], [], [], []
    for image, ann in records:
        h, w = image["height"], image["width"]
        where = f"{json_path.name}: image {image['id']} ({ann['file_name']})"
        pixels = load_image(images_dir / image["file_name"], 3, max_pixels)
        if pixels.shape[1:] != (h, w):
            raise DataError(f"{json_path.name}: image {image['id']} ({image['file_name']}) is {pixels.shape[2]}×{pixels.shape[1]} "
                            f"but the JSON says {w}×{h}", "fix the record's width/height or the image")
        ids = _read_png(png_dir / ann["file_name"], (h, w), where, max_pixels)
        listed = {s["id"]: s for s in ann["segments_info"]}
        present, counts = np.unique(ids, return_counts=True)
        area = dict(zip(present.tolist(), counts.tolist()))
        unknown = [v for v in area if v != 0 and v not in listed]
        if unknown:
            raise DataError(f"{where}: the PNG has segment ids {unknown[:5]} that segments_info does not list",
                            "list every segment of the PNG, or fix the PNG")
        empty = [s for s in listed if s not in area]
        if empty:
            raise DataError(f"{where}: segments {empty[:5]} are listed but have no pixels in the PNG", "drop them or fix the PNG")
        semantic = np.full((h, w), IGNORE_INDEX, np.int64)
        inst = np.zeros((h, w), np.int64)
        table = []
        k = 0
        for sid, s in listed.items():
            region = ids == sid
            label = label_of[s["category_id"]]
            thing, crowd = bool(categories[s["category_id"]][1]), bool(s.get("iscrowd", 0))
            if not crowd:
                semantic[region] = label
                if thing:
                    k += 1
                    inst[region] = k
            table.append({"id": sid, "category": label, "is_thing": int(thing), "iscrowd": int(crowd), "area": area[sid]})
        images.append(pixels)
        masks.append(semantic)
        instances.append(inst)
        segment_ids.append(ids)
        tables.append(table)
    return CocoPanopticDataset(info, images, masks, instances, segment_ids, tables, transform)


def _read_png(path: Path, size: tuple[int, int], where: str, max_pixels: int | None) -> np.ndarray:
    """H×W int32 segment ids of an RGB panoptic PNG."""
    with open_within_budget(path, max_pixels, "panoptic PNG") as im:
        if im.mode != "RGB":
            raise DataError(f"{where}: the PNG is mode {im.mode}, not RGB", "write panoptic PNGs as 8-bit RGB (id = R + 256·G + 256²·B)")
        if (im.height, im.width) != size:
            raise DataError(f"{where}: the PNG is {im.width}×{im.height} but the image is {size[1]}×{size[0]}", "fix the PNG")
        try:
            rgb = np.asarray(im.convert("RGB"), dtype=np.int32)
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"{where}: the PNG cannot be decoded ({type(e).__name__})", "rewrite the PNG") from None
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def _read_json(path: Path, images_dir: Path, png_dir: Path) -> tuple[list[tuple[dict, dict]], dict[int, tuple[str, bool]]]:
    """(image record, its panoptic annotation) per image, and category id -> (name, isthing); every record checked."""
    data = read_coco_json(path, "panoptic", SPEC)
    name = path.name
    categories: dict[int, tuple[str, bool]] = {}
    for c in data["categories"]:
        if (not isinstance(c, dict) or not is_int(c.get("id")) or not isinstance(c.get("name"), str)
                or c.get("isthing") not in (0, 1)):
            raise DataError(f"{name}: category {str(c)[:80]} needs an integer 'id', a 'name' and 'isthing' 0 or 1",
                            "fix the categories list")
        if c["id"] in categories:
            raise DataError(f"{name}: category id {c['id']} is listed twice", "give each category its own id")
        categories[c["id"]] = (c["name"], bool(c["isthing"]))
    if not categories:
        raise DataError(f"{name} lists no categories", "add the categories the segments use")
    if len(categories) > IGNORE_INDEX:
        raise DataError(f"{name} lists {len(categories)} categories", f"edgeseg's masks hold at most {IGNORE_INDEX} classes")
    images = read_image_records(data, name, images_dir)
    # kept: float RGB, classes, instance ids, segment ids; while one PNG is read: its RGB as int32 and a region
    tally = budgets.Tally("bytes", f"{name}: the data set in memory")
    for i, im in images.items():
        tally.add(im["width"] * im["height"] * 32, f"image {i}")
    biggest = max(im["width"] * im["height"] for im in images.values())
    budgets.check("bytes", tally.total + 16 * biggest, f"{name}: decoding its largest PNG beside the data set")
    annotations: dict[int, dict] = {}
    for a in data["annotations"]:
        image_id = a.get("image_id") if isinstance(a, dict) else None
        if not is_int(image_id) or image_id not in images:
            raise DataError(f"{name}: annotation {str(a)[:80]} refers to image {image_id!r}, which is not in 'images'",
                            "fix its image_id or drop it")
        where = f"{name}: annotation of image {image_id}"
        if image_id in annotations:
            raise DataError(f"{where} is given twice", "give each image one panoptic annotation")
        if not isinstance(a.get("file_name"), str) or not isinstance(a.get("segments_info"), list):
            raise DataError(f"{where} needs a PNG 'file_name' and a 'segments_info' list", "fix the annotation")
        file_inside(png_dir, a["file_name"], where)
        budgets.check("annotations", len(a["segments_info"]), f"{where}: its segments")
        seen: set[int] = set()
        for s in a["segments_info"]:
            if not isinstance(s, dict) or not is_int(s.get("id")) or not 0 < s["id"] < 256**3:
                raise DataError(f"{where}: segment {str(s)[:60]} needs an integer 'id' in 1..{256**3 - 1} (0 is void)",
                                "fix segments_info")
            if s["id"] in seen:
                raise DataError(f"{where}: segment id {s['id']} is listed twice", "give each segment its own id")
            if not is_int(s.get("category_id")) or s["category_id"] not in categories:  # a list is unhashable
                raise DataError(f"{where}: segment {s['id']} has unknown category {s.get('category_id')!r}",
                                "use a category id listed in 'categories'")
            if s.get("iscrowd", 0) not in (0, 1):
                raise DataError(f"{where}: segment {s['id']} has iscrowd {s.get('iscrowd')!r}", "use 0 or 1")
            seen.add(s["id"])
        annotations[image_id] = a
    missing = [i for i in sorted(images) if i not in annotations]
    if missing:
        raise DataError(f"{name}: images {missing[:5]} have no panoptic annotation", "annotate them or drop their records")
    return [(images[i], annotations[i]) for i in sorted(images)], categories
