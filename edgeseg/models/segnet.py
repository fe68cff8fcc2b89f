"""SegNet (Badrinarayanan, Kendall, Cipolla): the 13 VGG16 convolutions (with batch norm) as encoder,
max-pooling that remembers its indices, and a mirrored decoder that upsamples by max-unpooling with
those indices (sparse maps densified by the following convolutions), then a per-pixel classifier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgeseg.models.common import conv_bn_relu
from edgeseg.models.registry import register

VGG16_STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class SegNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width_mult: float = 1.0):
        super().__init__()
        stages = [(max(8, int(c * width_mult)), n) for c, n in VGG16_STAGES]
        self.encoder = nn.ModuleList()
        cin = in_channels
        for c, n in stages:
            self.encoder.append(nn.Sequential(*[conv_bn_relu(cin if i == 0 else c, c) for i in range(n)]))
            cin = c
        # Decoder stage i mirrors encoder stage i: its last conv maps to the channels of the stage before.
        self.decoder = nn.ModuleList()
        for s in reversed(range(len(stages))):
            c, n = stages[s]
            cout = stages[s - 1][0] if s > 0 else stages[0][0]
            convs = [conv_bn_relu(c, c) for _ in range(n - 1)] + [conv_bn_relu(c, cout)]
            self.decoder.append(nn.Sequential(*convs))
        self.classifier = nn.Conv2d(stages[0][0], num_classes, 3, padding=1)
        self.size_divisor = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        indices, sizes = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[-2:])
            x, idx = F.max_pool2d(x, 2, 2, return_indices=True)
            indices.append(idx)
        for stage in self.decoder:
            x = F.max_unpool2d(x, indices.pop(), 2, 2, output_size=sizes.pop())
            x = stage(x)
        return {"logits": self.classifier(x)}


@register("segnet")
def segnet(num_classes: int, in_channels: int = 3, width_mult: float = 1.0) -> SegNet:
    return SegNet(num_classes, in_channels, width_mult)
