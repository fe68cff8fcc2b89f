"""Nuclei: the real DSB-2018 fluorescence image (512², uint16) and its instance mask (125 nuclei)
shipped by stardist, as a 2-class semantic set of crops. Train crops come from the left part of
the image, validation crops from the right part, with a gap between them. Instance ids are kept
(``SegDataset.instances``) for instance and panoptic work (``ds.panoptic(i)``: nuclei are things, the
background is stuff; a nucleus cut by the crop's edge is one segment).
"""
from __future__ import annotations

import numpy as np

from edgeseg.data.base import DatasetInfo, SegDataset, package_file
from edgeseg.errors import DataError

INSTALL = "run scripts/setup.sh, or: pip install --no-deps stardist==0.9.2"
TRAIN_COLUMNS = (0, 320)
VAL_COLUMNS = (352, 512)

INFO = DatasetInfo(
    name="nuclei",
    class_names=("background", "nucleus"),
    in_channels=1,
    mean=(0.2,),
    std=(0.25,),
    notes={"train_columns": list(TRAIN_COLUMNS), "val_columns": list(VAL_COLUMNS)},
    thing_classes=(1,),  # panoptic: each nucleus a thing, background stuff
)


def load_image_and_instances() -> tuple[np.ndarray, np.ndarray]:
    """The image scaled to [0, 1] by its 1st/99.8th percentiles, and the instance id map (0 = none)."""
    import tifffile

    try:
        img = tifffile.imread(package_file("stardist", "images/img2d.tif", INSTALL)).astype(np.float32)
        inst = tifffile.imread(package_file("stardist", "images/mask2d.tif", INSTALL)).astype(np.int64)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the stardist nuclei image ({e})", "reinstall: " + INSTALL) from None
    if img.ndim != 2 or img.shape != inst.shape:
        raise DataError(f"nuclei image {img.shape} and mask {inst.shape} do not match", INSTALL)
    lo, hi = np.percentile(img, (1.0, 99.8))
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32), inst


def nuclei(split: str = "train", crop: int = 128, stride: int = 64, transform=None) -> SegDataset:
    if split not in ("train", "val"):
        raise DataError(f"unknown nuclei split '{split}'", "use 'train' or 'val'")
    img, inst = load_image_and_instances()
    c0, c1 = TRAIN_COLUMNS if split == "train" else VAL_COLUMNS
    if c1 - c0 < crop:
        raise DataError(f"crop {crop} is wider than the {split} region ({c1 - c0} columns)", "use a smaller crop")
    images, masks, instances = [], [], []
    for y in range(0, img.shape[0] - crop + 1, stride):
        for x in range(c0, c1 - crop + 1, stride):
            images.append(img[None, y : y + crop, x : x + crop])
            ids = inst[y : y + crop, x : x + crop]
            instances.append(ids)
            masks.append((ids > 0).astype(np.int64))
    ds = SegDataset(INFO, images, masks, transform)
    ds.instances = instances
    return ds
