"""Data sets: real (LiTS CT slices, stardist nuclei), synthetic scenes, a user's folder or COCO-format set."""
from __future__ import annotations

from edgeseg.data.base import IGNORE_INDEX, DatasetInfo, SegDataset, normalize
from edgeseg.data.folder import load_image
from edgeseg.errors import DataError

DATASETS = ("lits", "nuclei", "synthetic", "folder:<path>", "coco:<images dir>,<instances.json>",
            "coco-panoptic:<images dir>,<panoptic json>,<png dir>")


# What each data set takes as arguments (from --data-arg or a model file's config.dataset_args, which is untrusted):
# name -> (type, low, high); "pair" is two numbers. Anything else is refused before the data set is built.
DATASET_ARGS: dict[str, dict[str, tuple]] = {
    "lits": {"axis": (int, 0, 2), "context": (int, 0, 8), "extra_axes": (bool, 0, 1), "hu_window": ("pair", -4096, 4096)},
    "nuclei": {"crop": (int, 8, 512), "stride": (int, 1, 512)},
    "synthetic": {"num_images": (int, 1, 100_000), "size": ("pair", 8, 8192), "num_classes": (int, 2, 254),
                  "seed": (int, 0, 2**32 - 1)},
    "folder": {"channels": (int, 1, 3)},
    "coco": {"max_pixels": (int, 1, 10**12)},
    "coco-panoptic": {"max_pixels": (int, 1, 10**12)},
}


def check_dataset_args(name: str, args) -> None:
    """Refuse arguments data set ``name`` does not take, or of the wrong type or range, in one line."""
    import math
    from pathlib import Path

    kind = name if name in DATASET_ARGS else name.split(":", 1)[0] if ":" in name and not Path(name).is_dir() else "folder"
    allowed = DATASET_ARGS.get(kind, {})
    if not isinstance(args, dict):
        raise DataError(f"the arguments of data set '{kind}' are a {type(args).__name__}, not a mapping", "pass key=value pairs")
    for key, value in args.items():
        if key not in allowed:
            raise DataError(f"data set '{kind}' takes no argument {str(key)[:40]!r}",
                            f"its arguments are: {', '.join(allowed) or 'none'}")
        kind_of, low, high = allowed[key]
        if kind_of == "pair":
            ok = (isinstance(value, (list, tuple)) and len(value) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value))
            ok = ok and all(low <= v <= high for v in value) and (key != "size" or all(isinstance(v, int) for v in value))
        elif kind_of is bool:
            ok = isinstance(value, bool)
        else:
            ok = isinstance(value, kind_of) and not isinstance(value, bool) and low <= value <= high
        if not ok:
            what = "two numbers" if kind_of == "pair" else kind_of.__name__
            raise DataError(f"data set '{kind}' argument {key}={str(value)[:40]} is not {what} in {low}..{high}",
                            "fix --data-arg, or the model file's config.dataset_args")


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

    check_dataset_args(name, kwargs)
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


__all__ = ["DATASETS", "DATASET_ARGS", "check_dataset_args", "IGNORE_INDEX", "DatasetInfo", "SegDataset", "get_dataset", "load_image", "normalize"]
