"""Training augmentation on (image C×H×W, mask H×W) tensors: flip, scale, crop (padding with ignore)."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from edgeseg.data.base import IGNORE_INDEX


class TrainAugment:
    def __init__(self, crop: int | None = None, scale: tuple[float, float] = (0.75, 1.25), hflip: bool = True,
                 vflip: bool = False, seed: int | None = None):
        self.crop = crop
        self.scale = scale
        self.hflip = hflip
        self.vflip = vflip
        self.rng = random.Random(seed)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hflip and self.rng.random() < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        if self.vflip and self.rng.random() < 0.5:
            image, mask = image.flip(-2), mask.flip(-2)
        s = self.rng.uniform(*self.scale)
        if abs(s - 1.0) > 1e-3:
            h, w = mask.shape
            size = (max(8, round(h * s)), max(8, round(w * s)))
            image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
        if self.crop:
            image, mask = self.random_crop(image, mask, self.crop)
        return image, mask

    def random_crop(self, image, mask, crop):
        h, w = mask.shape
        ph, pw = max(0, crop - h), max(0, crop - w)
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), value=0.0)
            mask = F.pad(mask, (0, pw, 0, ph), value=IGNORE_INDEX)
            h, w = mask.shape
        y = self.rng.randint(0, h - crop)
        x = self.rng.randint(0, w - crop)
        return image[:, y : y + crop, x : x + crop], mask[y : y + crop, x : x + crop]
