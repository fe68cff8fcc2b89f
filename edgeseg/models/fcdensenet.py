"""FC-DenseNet, "The One Hundred Layers Tiramisu" (Jégou et al.): dense blocks (BN-ReLU-3×3 conv-
dropout layers, each seeing all earlier maps), transition-down (BN-ReLU-1×1 conv-dropout-maxpool),
transition-up (3×3 stride-2 transposed conv) that upsamples only the new maps of the previous dense
block, and skip concatenation with the down path.
"""
from __future__ import annotations

import torch
from torch import nn

from edgeseg.models.registry import register

CONFIGS = {  # layers per dense block (down path; the up path mirrors it), bottleneck layers, growth rate
    "fcdensenet56": ((4, 4, 4, 4, 4), 4, 12),
    "fcdensenet67": ((5, 5, 5, 5, 5), 5, 16),
    "fcdensenet103": ((4, 5, 7, 10, 12), 15, 16),
}


class DenseLayer(nn.Sequential):
    def __init__(self, cin: int, growth: int, dropout: float):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, growth, 3, padding=1), nn.Dropout2d(dropout))


class DenseBlock(nn.Module):
    """Returns the concatenation of the input and all new maps, or (with ``new_only``) the new maps."""

    def __init__(self, cin: int, growth: int, n_layers: int, dropout: float, new_only: bool):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth, dropout) for i in range(n_layers))
        self.new_only = new_only

    def forward(self, x):
        new = []
        for layer in self.layers:
            out = layer(x)
            x = torch.cat([x, out], dim=1)
            new.append(out)
        return torch.cat(new, dim=1) if self.new_only else x


class FCDenseNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, blocks: tuple[int, ...], bottleneck: int, growth: int,
                 first_channels: int = 48, dropout: float = 0.2):
        super().__init__()
        self.first = nn.Conv2d(in_channels, first_channels, 3, padding=1)
        c = first_channels
        self.down_blocks, self.trans_down, skip_channels = nn.ModuleList(), nn.ModuleList(), []
        for n in blocks:
            self.down_blocks.append(DenseBlock(c, growth, n, dropout, new_only=False))
            c += n * growth
            skip_channels.append(c)
            self.trans_down.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c, 1),
                                                 nn.Dropout2d(dropout), nn.MaxPool2d(2)))
        self.bottleneck = DenseBlock(c, growth, bottleneck, dropout, new_only=True)
        up_in = bottleneck * growth
        self.trans_up, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i, n in enumerate(reversed(blocks)):
            self.trans_up.append(nn.ConvTranspose2d(up_in, up_in, 3, stride=2, padding=1, output_padding=1))
            cin = up_in + skip_channels[-1 - i]
            last = i == len(blocks) - 1
            self.up_blocks.append(DenseBlock(cin, growth, n, dropout, new_only=not last))
            up_in = cin + n * growth if last else n * growth
        self.classifier = nn.Conv2d(up_in, num_classes, 1)
        self.size_divisor = 2 ** len(blocks)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.first(x)
        skips = []
        for block, down in zip(self.down_blocks, self.trans_down):
            x = block(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(x)
        for up, block in zip(self.trans_up, self.up_blocks):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return {"logits": self.classifier(x)}


def _fcdensenet(num_classes: int, in_channels: int, config: str, dropout: float = 0.2) -> FCDenseNet:
    blocks, bottleneck, growth = CONFIGS[config]
    return FCDenseNet(num_classes, in_channels, blocks, bottleneck, growth, dropout=dropout)


for _name in CONFIGS:
    register(_name, config=_name)(_fcdensenet)
