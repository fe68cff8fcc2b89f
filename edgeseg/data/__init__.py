"""Data sets: real (LiTS CT slices, stardist nuclei), synthetic scenes, a user's folder or COCO-format set."""
from __future__ import annotations

from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, SegDataset, normalize
from edgeseg.data.folder import load_image
from edgeseg.errors import DataError

DATASETS = ("lits", "nuclei", "synthetic", "folder:<path>", "coco:<images dir>,<instances.json>",
            "coco-panoptic:<images dir>,<panoptic json>,<png dir>")


def get_dataset(name: str, split: str = "train", transform=None, **kwargs) -> SegDataset:
    """``lits``, ``nuclei``, ``synthetic``, ``folder:<path>`` (or a path to an existing folder) or
    ``coco:<images dir>,<instances.json>[,<val json>]`` or ``coco-panoptic:<images dir>,<panoptic json>,<png dir>``."""
    from pathlib import Path

    from edgeseg.data.coco import coco
    from edgeseg.data.coco_panoptic import coco_panoptic
    from edgeseg.data.folder import folder
    from edgeseg.data.lits import lits
    from edgeseg.data.nuclei import nuclei
    from edgeseg.data.synthetic import synthetic

    if name == "lits":
        return lits(split, transform=transform, **kwargs)
    if name == "nuclei":
        return nuclei(split, transform=transform, **kwargs)
    if name == "synthetic":
        return synthetic(split, transform=transform, **kwargs)
    if name.startswith("coco-panoptic:"):
        return coco_panoptic(name.removeprefix("coco-panoptic:"), split, transform=transform, **kwargs)
    if name.startswith("coco:"):
        return coco(name.removeprefix("coco:"), split, transform=transform, **kwargs)
    if name.startswith("folder:") or Path(name).is_dir():
        return folder(name.removeprefix("folder:"), split, transform=transform, **kwargs)
    raise DataError(f"unknown data set '{name}'", f"use one of: {', '.join(DATASETS)}")


__all__ = ["DATASETS", "IGNORE_INDEX", "DatasetInfo", "SegDataset", "get_dataset", "load_image", "normalize"]
