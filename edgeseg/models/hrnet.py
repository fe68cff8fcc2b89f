"""HRNetV2 (Wang et al.): a high-resolution stream kept through the whole net, lower-resolution
streams added stage by stage (stage n has n streams at 1/4..1/2^(n+1) resolution with C, 2C, 4C, 8C
channels), and repeated multi-resolution fusion: finer -> coarser by consecutive stride-2 3×3
convolutions, coarser -> finer by a 1×1 convolution and bilinear upsampling.

Representation heads: ``v2`` (upsample all streams to 1/4, concatenate 15C channels, 1×1 conv,
classifier, ×4 bilinear upsampling), ``v1`` (the high-resolution stream only) and ``v2p`` (the V2
representation average-pooled into a 4-level pyramid, each level convolved, upsampled and summed).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from edgeseg.models.common import conv_bn_relu
from edgeseg.models.registry import register

# (stage-1 bottleneck blocks, [(modules, blocks per branch) for stages 2, 3, 4])
CONFIGS = {
    "w18_small": (2, [(1, 2), (3, 2), (2, 2)]),
    "w18": (4, [(1, 4), (4, 4), (3, 4)]),
    "w48": (4, [(1, 4), (4, 4), (3, 4)]),
}
WIDTHS = {"w18_small": 18, "w18": 18, "w48": 48}


def upsample_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)


def conv_bn(cin: int, cout: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout))


class HRModule(nn.Module):
    """Residual blocks per stream, then full fusion: output i = ReLU(sum_j f_ji(x_j))."""

    def __init__(self, channels: list[int], n_blocks: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(*[BasicBlock(c, c) for _ in range(n_blocks)]) for c in channels)
        self.fuse = nn.ModuleList()
        for i, ci in enumerate(channels):
            row = nn.ModuleList()
            for j, cj in enumerate(channels):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # coarser -> finer: 1×1 conv here, bilinear upsampling in forward
                    row.append(conv_bn(cj, ci, 1))
                else:  # finer -> coarser: i-j stride-2 3×3 convs, ReLU between them
                    steps: list[nn.Module] = []
                    for k in range(i - j):
                        last = k == i - j - 1
                        steps.append(conv_bn(cj, ci if last else cj, 3, 2))
                        if not last:
                            steps.append(nn.ReLU(inplace=True))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [b(x) for b, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            y = xs[i]
            for j, f in enumerate(row):
                if j > i:
                    y = y + upsample_to(f(xs[j]), xs[i])
                elif j < i:
                    y = y + f(xs[j])
            out.append(F.relu(y))
        return out


class HRNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int, stage1_blocks: int,
                 stages: list[tuple[int, int]], head: str = "v2"):
        super().__init__()
        if head not in ("v1", "v2", "v2p"):
            raise ValueError(f"HRNet head must be v1, v2 or v2p, got {head}")
        self.head_kind = head
        self.stem = nn.Sequential(conv_bn_relu(in_channels, 64, 3, 2), conv_bn_relu(64, 64, 3, 2))
        down = conv_bn(64, 256, 1)
        self.layer1 = nn.Sequential(Bottleneck(64, 64, downsample=down),
                                    *[Bottleneck(256, 64) for _ in range(stage1_blocks - 1)])
        channels = [width * 2**i for i in range(4)]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        prev = [256]
        for s, (n_modules, n_blocks) in enumerate(stages):
            cur = channels[: s + 2]
            trans = nn.ModuleList()
            for i, c in enumerate(cur):
                if i < len(prev):
                    trans.append(nn.Identity() if prev[i] == c else conv_bn_relu(prev[i], c))
                else:  # the new, coarser stream comes from the coarsest existing one
                    trans.append(conv_bn_relu(prev[-1], c, 3, 2))
            self.transitions.append(trans)
            self.stages.append(nn.Sequential(*[HRModule(cur, n_blocks) for _ in range(n_modules)]))
            prev = cur
        total = sum(channels) if head != "v1" else channels[0]
        self.mix = conv_bn_relu(total, total, 1)
        if head == "v2p":
            self.pyramid = nn.ModuleList(conv_bn_relu(total, total, 3) for _ in range(4))
        self.classifier = nn.Conv2d(total, num_classes, 1)
        self.size_divisor = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        xs = [self.layer1(self.stem(x))]
        for trans, stage in zip(self.transitions, self.stages):
            xs = [t(xs[min(i, len(xs) - 1)]) for i, t in enumerate(trans)]
            xs = stage(xs)
        if self.head_kind == "v1":
            rep = xs[0]
        else:
            rep = torch.cat([xs[0]] + [upsample_to(t, xs[0]) for t in xs[1:]], dim=1)
        rep = self.mix(rep)
        if self.head_kind == "v2p":
            levels = [conv(F.avg_pool2d(rep, 2**k) if k else rep) for k, conv in enumerate(self.pyramid)]
            rep = levels[0] + sum(upsample_to(l, rep) for l in levels[1:])
        logits = self.classifier(rep)
        return {"logits": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}


def _hrnet(num_classes: int, in_channels: int, config: str, head: str = "v2") -> HRNetV2:
    stage1, stages = CONFIGS[config]
    return HRNetV2(num_classes, in_channels, WIDTHS[config], stage1, stages, head)


for _name in CONFIGS:
    register(f"hrnetv2_{_name}", config=_name)(_hrnet)
