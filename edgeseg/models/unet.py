"""U-Net (Ronneberger, Fischer, Brox).

``unet``: as in the paper: unpadded 3×3 convolutions, 2×2 max-pooling, 2×2 up-convolutions that
halve the channels, crop-and-concatenate skips, 1×1 classifier. Its output is smaller than its
input, so forward applies the paper's overlap-tile strategy: the input is mirror-padded
(92 px before, 96 px after for H, W multiples of 16) and the output cropped back to input size.
``unet_padded``: the same with padded convolutions (and batch norm by default), for any size
that is a multiple of 16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.registry import register

# With 4 poolings the paper's net maps an input of 16k+124 to 16k-60: 92 pixels lost per side.
MIRROR_BEFORE, MIRROR_AFTER = 92, 96


def double_conv(cin: int, cout: int, padded: bool, bn: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=1 if padded else 0, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    dy = (x.shape[-2] - h) // 2
    dx = (x.shape[-1] - w) // 2
    return x[..., dy : dy + h, dx : dx + w]


class UNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 1, base_width: int = 64, depth: int = 4,
                 padded: bool = False, batch_norm: bool = False):
        super().__init__()
        self.padded = padded
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_channels, widths[0], padded, batch_norm)])
        self.down.extend(double_conv(widths[i], widths[i + 1], padded, batch_norm) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.dec = nn.ModuleList(double_conv(widths[i] * 2, widths[i], padded, batch_norm) for i in reversed(range(depth)))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)
        self.size_divisor = 2**depth
        if not padded and depth != 4:
            raise ValueError("the unpadded U-Net's overlap-tile margins are for depth 4")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h, w = x.shape[-2:]
        if not self.padded:
            x = F.pad(x, (MIRROR_BEFORE, MIRROR_AFTER, MIRROR_BEFORE, MIRROR_AFTER), mode="reflect")
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = up(x)
            skip = skips.pop()
            if not self.padded:
                skip = center_crop(skip, x.shape[-2], x.shape[-1])
            x = dec(torch.cat([skip, x], dim=1))
        logits = self.classifier(x)
        if not self.padded:
            logits = logits[..., :h, :w]
        return {"logits": logits}


@register("unet")
def unet(num_classes: int, in_channels: int = 1, base_width: int = 64, batch_norm: bool = False) -> UNet:
    return UNet(num_classes, in_channels, base_width, padded=False, batch_norm=batch_norm)


@register("unet_padded")
def unet_padded(num_classes: int, in_channels: int = 1, base_width: int = 64, depth: int = 4,
                batch_norm: bool = True) -> UNet:
    return UNet(num_classes, in_channels, base_width, depth, padded=True, batch_norm=batch_norm)
