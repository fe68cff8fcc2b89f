"""LiTS: 2-D slices of the one real CT volume (128³, HU) shipped by liver-ct-segmentation-package.

Classes: background / liver / tumour. Train and validation are contiguous slice ranges with a gap,
so no validation slice neighbours a training slice. Extra training slices along the other two axes
(``extra_axes=True``) are cropped to the training range, so they never see a validation voxel.
"""
from __future__ import annotations

import numpy as np

from edgeseg.data.base import DatasetInfo, SegDataset, package_file
from edgeseg.errors import DataError

INSTALL = "run scripts/setup.sh, or: pip install --no-deps liver-ct-segmentation-package==1.6.0"
HU_WINDOW = (-200.0, 300.0)  # abdominal soft-tissue window
TRAIN_SLICES = (0, 96)  # [start, stop) along the slicing axis
VAL_SLICES = (104, 128)  # 8 slices of gap after the training range

INFO = DatasetInfo(
    name="lits",
    class_names=("background", "liver", "tumour"),
    in_channels=1,
    mean=(0.45,),
    std=(0.30,),
    notes={"hu_window": list(HU_WINDOW), "train_slices": list(TRAIN_SLICES), "val_slices": list(VAL_SLICES)},
)


def load_volume() -> tuple[np.ndarray, np.ndarray]:
    """The CT volume windowed to [0, 1] (float32) and its label volume (int64), both 128³."""
    import mrcfile

    img_path = package_file("liver-ct-segmentation-package", "img_117.mrc", INSTALL)
    lab_path = package_file("liver-ct-segmentation-package", "lab_117.mrc", INSTALL)
    try:
        with mrcfile.open(img_path, permissive=True) as f:
            hu = np.asarray(f.data, dtype=np.float32)
        with mrcfile.open(lab_path, permissive=True) as f:
            lab = np.asarray(f.data, dtype=np.int64)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the LiTS volume ({e})", "reinstall: " + INSTALL) from None
    if hu is None or lab is None or hu.ndim != 3 or hu.shape != lab.shape:
        raise DataError(f"LiTS volume and labels do not match: {getattr(hu, 'shape', None)} vs {getattr(lab, 'shape', None)}", INSTALL)
    if lab.max() > 2 or lab.min() < 0:
        raise DataError(f"LiTS labels outside 0..2 (found {lab.min()}..{lab.max()})", INSTALL)
    lo, hi = HU_WINDOW
    img = (np.clip(hu, lo, hi) - lo) / (hi - lo)
    return img.astype(np.float32), lab


def lits(split: str = "train", axis: int = 0, extra_axes: bool = False, transform=None) -> SegDataset:
    if split not in ("train", "val"):
        raise DataError(f"unknown LiTS split '{split}'", "use 'train' or 'val'")
    img, lab = load_volume()
    start, stop = TRAIN_SLICES if split == "train" else VAL_SLICES
    img_s = np.moveaxis(img, axis, 0)[start:stop]
    lab_s = np.moveaxis(lab, axis, 0)[start:stop]
    images = [s[None] for s in img_s]
    masks = list(lab_s)
    if extra_axes and split == "train":
        # Slices along the two other axes of the training slab only (shape (stop-start)×128).
        for other in (1, 2):
            for k in range(img_s.shape[other]):
                im = np.take(img_s, k, axis=other)
                images.append(im[None])
                masks.append(np.take(lab_s, k, axis=other))
    return SegDataset(INFO, images, masks, transform)
