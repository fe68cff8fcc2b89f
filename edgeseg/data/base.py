"""What every data set shares: a torch Dataset of (image, mask) pairs plus the facts a model and
its ONNX metadata need (class names, channels, normalisation)."""
from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeseg.errors import DataError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    class_names: tuple[str, ...]
    in_channels: int
    # Applied by every backend to pixel values scaled to [0, 1]: (x - mean) / std, per channel.
    mean: tuple[float, ...]
    std: tuple[float, ...]
    ignore_index: int = IGNORE_INDEX
    notes: dict = field(default_factory=dict)
    # Panoptic split: the classes whose instances are counted one by one (things); every other class is stuff.
    thing_classes: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class SegDataset(Dataset):
    """Images already scaled to [0, 1] (C×H×W float32) and masks (H×W int64, 255 = ignore).

    ``__getitem__`` returns the normalised image tensor and the mask tensor; an optional
    ``transform(image, mask)`` (see ``edgeseg.data.transforms``) runs before normalisation.
    """

    instances: list[np.ndarray] | None = None  # per image H×W instance ids (0 = none), where the set has them

    def __init__(self, info: DatasetInfo, images: list[np.ndarray], masks: list[np.ndarray], transform=None):
        if len(images) != len(masks):
            raise DataError(f"{info.name}: {len(images)} images but {len(masks)} masks", "give one mask per image")
        self.info = info
        self.images = images
        self.masks = masks
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The un-normalised image in [0, 1] (C×H×W float32) and its mask (H×W int64)."""
        return self.images[i], self.masks[i]

    def panoptic(self, i: int) -> tuple[np.ndarray, list[dict]]:
        """Image ``i``'s panoptic ground truth (un-transformed, like ``raw``): an H×W int32 segment-id map
        (0 = void) and its segment table, dicts ``{id, category, is_thing, iscrowd, area}`` — the form
        ``edgeseg.metrics.PanopticEvaluator`` reads.

        Stuff classes give one segment per class present; thing classes (``info.thing_classes``) one per
        instance of ``self.instances[i]``. Void: ``ignore_index`` pixels and thing pixels without an instance.
        Ids run 1.. in that order: stuff by class, then things by instance id."""
        from edgeseg.metrics.panoptic import panoptic_from_labels

        mask = np.asarray(self.masks[i])
        things = self.info.thing_classes
        if not things:  # stuff only
            return panoptic_from_labels(mask, (), ignore_index=self.info.ignore_index)
        if self.instances is None:
            raise DataError(f"{self.info.name} has thing classes but no instance ids", "panoptic ground truth needs instances")
        inst = np.asarray(self.instances[i])
        if inst.shape != mask.shape:
            raise DataError(f"{self.info.name} image {i}: instance ids {inst.shape} and mask {mask.shape} differ",
                            "give one instance map per mask")
        return panoptic_from_labels(mask, things, inst, self.info.ignore_index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(np.ascontiguousarray(self.images[i], dtype=np.float32))
        mask = torch.from_numpy(np.ascontiguousarray(self.masks[i], dtype=np.int64))
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return normalize(image, self.info.mean, self.info.std), mask


def normalize(image: torch.Tensor, mean, std) -> torch.Tensor:
    mean_t = torch.as_tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - mean_t) / std_t


def package_file(distribution: str, suffix: str, install_hint: str) -> Path:
    """Find a data file shipped inside an installed PyPI distribution without importing it."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise DataError(f"the data package '{distribution}' is not installed", install_hint) from None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    raise DataError(f"'{distribution}' is installed but has no file ending in {suffix}", install_hint)
