"""DDRNet-23-slim (Pan, Hong et al., "Deep Dual-resolution Networks for Real-time and Accurate Semantic Segmentation
of Road Scenes", IEEE T-ITS 2022; arXiv 2101.06085).

- §3.1, Table 1: a ResNet stem to 1/8, then two branches: a low-resolution one (1/16, 1/32, and a 1/64 bottleneck)
  and a high-resolution one kept at 1/8, with bilateral fusion after stages 3 and 4 (high→low by strided 3×3
  convolutions, low→high by a 1×1 compression and bilinear upsampling). 23-slim: width 32, two basic blocks a stage.
- §3.2, Fig. 5: the Deep Aggregation Pyramid Pooling Module (DAPPM) on the 1/64 features: average pools of kernel
  5/9/17 (strides 2/4/8) and a global one, each 1×1-convolved, upsampled and fused hierarchically by 3×3 convs.
- §3.3: the segmentation head on the sum of both branches at 1/8; deep supervision by an auxiliary head on the
  high-resolution branch after stage 3 (training only, loss weight 0.4), OHEM cross-entropy (§4.2).
- Table 4 (Cityscapes): DDRNet-23-slim 5.7 M parameters, 36.3 GFLOPs at 1024×2048.

Every fixed-kernel pool is a plain ONNX AveragePool and the global one a mean, so the graph exports at dynamic H/W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.models.realtime.losses import ohem_cross_entropy, upsample
from edgeseg.models.registry import register


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet's basic block; ``last``: no ReLU at its end (DDRNet and PIDNet apply it where branches fuse)."""
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, last: bool = False):
        super().__init__()
        self.body = nn.Sequential(conv_bn(cin, planes, 3, stride), nn.ReLU(inplace=True), conv_bn(planes, planes))
        self.shortcut = conv_bn(cin, planes, 1, stride) if stride != 1 or cin != planes else nn.Identity()
        self.last = last

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x) + self.shortcut(x)
        return out if self.last else F.relu(out)


class Bottleneck(nn.Module):
    """ResNet's bottleneck with expansion 2 (DDRNet §3.1, Table 1: the 1/64 stage and the last high-res block)."""
    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1, last: bool = True):
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(conv_bn(cin, planes, 1), nn.ReLU(inplace=True), conv_bn(planes, planes, 3, stride),
                                  nn.ReLU(inplace=True), conv_bn(planes, out, 1))
        self.shortcut = conv_bn(cin, out, 1, stride) if stride != 1 or cin != out else nn.Identity()
        self.last = last

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x) + self.shortcut(x)
        return out if self.last else F.relu(out)


def stage(block, cin: int, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
    """``blocks`` blocks, the first strided; the stage's output is left before its last ReLU (fusion follows)."""
    layers = [block(cin, planes, stride, last=blocks == 1)]
    layers += [block(planes * block.expansion, planes, 1, last=i == blocks - 1) for i in range(1, blocks)]
    return nn.Sequential(*layers)


def bn_relu_conv(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    """Pre-activation convolution, as DDRNet's DAPPM and heads are built."""
    return nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False))


def pyramid_pools() -> list[nn.Module]:
    """DAPPM's (and PIDNet's PAPPM's) pools: kernels 5/9/17 at strides 2/4/8, then global (§3.2)."""
    return [nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8), GlobalPool()]


class GlobalPool(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=True)


class DAPPM(nn.Module):
    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__()
        self.scale0 = bn_relu_conv(cin, branch)
        self.scales = nn.ModuleList(nn.Sequential(pool, bn_relu_conv(cin, branch)) for pool in pyramid_pools())
        self.process = nn.ModuleList(bn_relu_conv(branch, branch, 3) for _ in range(4))
        self.compression = bn_relu_conv(branch * 5, cout)
        self.shortcut = bn_relu_conv(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        feats = [self.scale0(x)]
        for scale, process in zip(self.scales, self.process):  # hierarchical: each level adds the one before
            feats.append(process(upsample(scale(x), x) + feats[-1]))
        return self.compression(torch.cat(feats, 1)) + self.shortcut(x)


class SegHead(nn.Module):
    """DDRNet/PIDNet head: BN-ReLU-3×3 conv, BN-ReLU-1×1 conv to the classes (with bias)."""

    def __init__(self, cin: int, mid: int, cout: int):
        super().__init__()
        self.conv = bn_relu_conv(cin, mid, 3)
        self.out = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.conv(x))


def stem(in_channels: int, c: int) -> nn.Sequential:
    """Two strided 3×3 conv-BN-ReLU: 1/4 (DDRNet Table 1, "conv1")."""
    return nn.Sequential(conv_bn(in_channels, c, 3, 2), nn.ReLU(inplace=True), conv_bn(c, c, 3, 2), nn.ReLU(inplace=True))


class DDRNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 32, spp: int = 128, head: int = 64):
        super().__init__()
        c = width
        self.stem = nn.Sequential(stem(in_channels, c), stage(BasicBlock, c, c, 2))
        self.layer2 = stage(BasicBlock, c, 2 * c, 2, 2)                 # 1/8
        self.layer3, self.layer3_ = stage(BasicBlock, 2 * c, 4 * c, 2, 2), stage(BasicBlock, 2 * c, 2 * c, 2)
        self.layer4, self.layer4_ = stage(BasicBlock, 4 * c, 8 * c, 2, 2), stage(BasicBlock, 2 * c, 2 * c, 2)
        self.layer5, self.layer5_ = stage(Bottleneck, 8 * c, 8 * c, 1, 2), stage(Bottleneck, 2 * c, 2 * c, 1)
        self.compression3, self.compression4 = conv_bn(4 * c, 2 * c, 1), conv_bn(8 * c, 2 * c, 1)
        self.down3 = conv_bn(2 * c, 4 * c, 3, 2)
        self.down4 = nn.Sequential(conv_bn(2 * c, 4 * c, 3, 2), nn.ReLU(inplace=True), conv_bn(4 * c, 8 * c, 3, 2))
        self.spp = DAPPM(16 * c, spp, 4 * c)
        self.head = SegHead(4 * c, head, num_classes)
        self.aux_head = SegHead(2 * c, head, num_classes)  # deep supervision (§3.3), training only
        self.train_only = ("aux_head",)
        self.size_divisor = 32

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x
        x = self.layer2(F.relu(self.stem(x)))
        high = self.layer3_(F.relu(x))
        x = self.layer3(F.relu(x))
        x = x + self.down3(F.relu(high))                          # bilateral fusion after stage 3
        high = high + upsample(self.compression3(F.relu(x)), high)
        aux = high
        x = self.layer4(F.relu(x))
        high = self.layer4_(F.relu(high))
        x = x + self.down4(F.relu(high))                          # and after stage 4
        high = high + upsample(self.compression4(F.relu(x)), high)
        high = self.layer5_(F.relu(high))
        x = upsample(self.spp(self.layer5(F.relu(x))), high)
        out = {"logits": upsample(self.head(x + high), size)}
        if self.training:
            out["aux"] = upsample(self.aux_head(aux), size)
        return out

    def losses(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """OHEM cross-entropy of the main head, 0.4× that of the auxiliary one (§4.2)."""
        return {"seg": ohem_cross_entropy(outputs["logits"], target), "aux": 0.4 * ohem_cross_entropy(outputs["aux"], target)}


@register("ddrnet23_slim")
def ddrnet23_slim(num_classes: int, in_channels: int = 3, width_mult: float = 1.0) -> DDRNet:
    """DDRNet-23-slim; ``width_mult`` scales every width (1.0: the paper's; smaller for tests)."""
    return DDRNet(num_classes, in_channels, max(4, round(32 * width_mult)), max(8, round(128 * width_mult)),
                  max(8, round(64 * width_mult)))
