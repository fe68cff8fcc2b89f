"""LiTS: 2-D slices of the one real CT volume (128³, HU) shipped by liver-ct-segmentation-package.

Classes: background / liver / tumour; each tumour's connected component (8-connected, in its slice) is an
instance (``SegDataset.instances``) for instance and panoptic work (``ds.panoptic(i)``: tumour components are
things, background and liver stuff). Train and validation are contiguous slice ranges with a gap,
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
TUMOUR = 2

INFO = DatasetInfo(
    name="lits",
    class_names=("background", "liver", "tumour"),
    in_channels=1,
    mean=(0.45,),
    std=(0.30,),
    notes={"hu_window": list(HU_WINDOW), "train_slices": list(TRAIN_SLICES), "val_slices": list(VAL_SLICES)},
    thing_classes=(TUMOUR,),  # panoptic: each tumour component a thing; background and liver stuff
)


def _info_with_context(context: int) -> DatasetInfo:
    n = 2 * context + 1
    return DatasetInfo(name=f"lits(context={context})", class_names=INFO.class_names, in_channels=n,
                       mean=INFO.mean * n, std=INFO.std * n, notes={**INFO.notes, "context": context},
                       thing_classes=INFO.thing_classes)


def load_volume(hu_window: tuple[float, float] = HU_WINDOW) -> tuple[np.ndarray, np.ndarray]:
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
    lo, hi = hu_window
    img = (np.clip(hu, lo, hi) - lo) / (hi - lo)
    return img.astype(np.float32), lab


def lits(split: str = "train", axis: int = 0, context: int = 0, extra_axes: bool = False,
         hu_window: tuple[float, float] = HU_WINDOW, transform=None) -> SegDataset:
    """``context`` > 0 stacks the ``context`` slices on each side as extra channels (2.5-D input,
    2·context+1 channels; edges repeat the last slice). Only images are borrowed from neighbours,
    never labels, and the split gap is wider than the context, so no input is shared across splits."""
    if split not in ("train", "val"):
        raise DataError(f"unknown LiTS split '{split}'", "use 'train' or 'val'")
    gap = VAL_SLICES[0] - TRAIN_SLICES[1]
    if not 0 <= context <= gap // 2 - 1:
        raise DataError(f"LiTS context {context} is out of range", f"use 0..{gap // 2 - 1} (the split gap is {gap} slices)")
    if context and extra_axes:
        raise DataError("extra_axes and context cannot be combined", "use one of them")
    img, lab = load_volume(tuple(hu_window))
    start, stop = TRAIN_SLICES if split == "train" else VAL_SLICES
    vol = np.moveaxis(img, axis, 0)
    img_s = vol[start:stop]
    lab_s = np.moveaxis(lab, axis, 0)[start:stop]
    last = vol.shape[0] - 1
    images = [vol[[min(max(k + d, 0), last) for d in range(-context, context + 1)]] for k in range(start, stop)]
    masks = list(lab_s)
    if context:
        return _with_instances(SegDataset(_info_with_context(context), images, masks, transform))
    if extra_axes and split == "train":
        # Slices along the two other axes of the training slab only (shape (stop-start)×128).
        for other in (1, 2):
            for k in range(img_s.shape[other]):
                im = np.take(img_s, k, axis=other)
                images.append(im[None])
                masks.append(np.take(lab_s, k, axis=other))
    return _with_instances(SegDataset(INFO, images, masks, transform))


def _with_instances(ds: SegDataset) -> SegDataset:
    from scipy import ndimage

    ds.instances = [ndimage.label(m == TUMOUR, structure=np.ones((3, 3)))[0].astype(np.int64) for m in ds.masks]
    return ds
