"""PIDNet (Xu, Xiong, Bhattacharyya, "PIDNet: A Real-time Semantic Segmentation Network Inspired by PID
Controllers", CVPR 2023; arXiv 2206.02066).

Three branches on DDRNet's basic and bottleneck blocks (``ddrnet.py``), §3.2, Fig. 3 and Table 1:
- I (integral): the context branch down to 1/64, ending in the Parallel Aggregation PPM (PAPPM, §3.3, Fig. 6: DAPPM's
  pools with their 3×3 processing done in parallel as one grouped convolution);
- P (proportional): the 1/8 detail branch, fed by the I branch through Pixel-attention-guided fusion (Pag, §3.2,
  Fig. 4: a per-pixel sigmoid of the two branches' 1×1-embedded similarity picks between them);
- D (derivative): a 1/8 boundary branch adding upsampled I features (the "difference" layers);
- Bag / Light-Bag (§3.3, Fig. 7): the D branch's sigmoid picks P where it sees a boundary, I elsewhere.
  S and M use Light-Bag, L the full Bag.
Training only (§3.4, Fig. 5): an auxiliary P-branch head (l0, weight 0.4), a boundary head on the D branch (l1:
class-balanced BCE, weight 20), OHEM cross-entropy on the output (l2) and the boundary-awareness loss (l3: the
output's cross-entropy where the boundary head is above 0.8).

Table 6 (Cityscapes): PIDNet-S 7.6 M parameters, 47.6 GFLOPs (multiply-accumulates) at 1024×2048; ours 7.6 M, 47.2.
PIDNet-M: Table 6 gives 34.4 M and 197.4 GFLOPs, but Table 1 (and the authors' code) give M as (m, n, C) = (2, 3, 64),
which is 28.5 M and 177 GFLOPs; Table 6's two figures are what n = 4 gives (34.4 M, 197 GFLOPs: ``depth=4``). The zoo
follows Table 1, the architecture of the released Cityscapes models.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.models.realtime.ddrnet import (BasicBlock, Bottleneck, SegHead, bn_relu_conv, conv_bn, pyramid_pools, stage,
                                            stem)
from edgeseg.models.realtime.losses import (IGNORE_INDEX, balanced_bce, boundary_target, ohem_cross_entropy, upsample)
from edgeseg.models.registry import register


class PAPPM(nn.Module):
    """§3.3, Fig. 6: DAPPM with its four 3×3 processing convolutions run in parallel (one 4-group convolution)."""

    def __init__(self, cin: int, branch: int, cout: int):
        super().__init__()
        self.scale0 = bn_relu_conv(cin, branch)
        self.scales = nn.ModuleList(nn.Sequential(pool, bn_relu_conv(cin, branch)) for pool in pyramid_pools())
        self.process = bn_relu_conv(branch * 4, branch * 4, 3, groups=4)
        self.compression = bn_relu_conv(branch * 5, cout)
        self.shortcut = bn_relu_conv(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        x0 = self.scale0(x)
        pooled = torch.cat([upsample(scale(x), x) + x0 for scale in self.scales], 1)
        return self.compression(torch.cat([x0, self.process(pooled)], 1)) + self.shortcut(x)


class Pag(nn.Module):
    """Pixel-attention-guided fusion (§3.2, Fig. 4, eq. 5): σ = sigmoid(<f_p(P), f_i(up(I))>) per pixel,
    P ← (1 − σ)·P + σ·up(I)."""

    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.f_p, self.f_i = conv_bn(channels, mid, 1), conv_bn(channels, mid, 1)

    def forward(self, p: Tensor, i: Tensor) -> Tensor:
        sigma = torch.sigmoid((self.f_p(p) * upsample(self.f_i(i), p)).sum(1, keepdim=True))
        return (1 - sigma) * p + sigma * upsample(i, p)


class LightBag(nn.Module):
    """§3.3, Fig. 7(b): σ = sigmoid(D); out = f_p((1 − σ)·I + P) + f_i(I + σ·P), each f a 1×1 conv-BN."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.f_p, self.f_i = conv_bn(cin, cout, 1), conv_bn(cin, cout, 1)

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        sigma = torch.sigmoid(d)
        return self.f_p((1 - sigma) * i + p) + self.f_i(i + sigma * p)


class Bag(nn.Module):
    """§3.3, Fig. 7(a): out = conv3×3(σ·P + (1 − σ)·I), σ = sigmoid(D)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = bn_relu_conv(cin, cout, 3)

    def forward(self, p: Tensor, i: Tensor, d: Tensor) -> Tensor:
        sigma = torch.sigmoid(d)
        return self.conv(sigma * p + (1 - sigma) * i)


class PIDNet(nn.Module):
    """``m``, ``n``: basic blocks in the shallow / deep stages; ``c``: base width; Table 1's S (2, 3, 32, PPM 96,
    head 128), M (2, 3, 64, 96, 128), L (3, 4, 64, 112, 256)."""

    def __init__(self, num_classes: int, in_channels: int, m: int, n: int, c: int, ppm: int, head: int):
        super().__init__()
        self.stem = nn.Sequential(stem(in_channels, c), stage(BasicBlock, c, c, m))
        self.layer2 = stage(BasicBlock, c, 2 * c, m, 2)                              # 1/8
        self.layer3, self.layer4 = stage(BasicBlock, 2 * c, 4 * c, n, 2), stage(BasicBlock, 4 * c, 8 * c, n, 2)
        self.layer5 = stage(Bottleneck, 8 * c, 8 * c, 2, 2)                          # I: 1/16, 1/32, 1/64
        self.compression3, self.compression4 = conv_bn(4 * c, 2 * c, 1), conv_bn(8 * c, 2 * c, 1)
        self.pag3, self.pag4 = Pag(2 * c, c), Pag(2 * c, c)
        self.layer3_p, self.layer4_p = stage(BasicBlock, 2 * c, 2 * c, m), stage(BasicBlock, 2 * c, 2 * c, m)
        self.layer5_p = stage(Bottleneck, 2 * c, 2 * c, 1)                           # P: 1/8
        small = m == 2  # S and M: a thinner D branch and Light-Bag (Table 1)
        if small:
            self.layer3_d, self.layer4_d = stage(BasicBlock, 2 * c, c, 1), stage(Bottleneck, c, c, 1)
            self.diff3, self.diff4 = conv_bn(4 * c, c), conv_bn(8 * c, 2 * c)
        else:
            self.layer3_d, self.layer4_d = stage(BasicBlock, 2 * c, 2 * c, 1), stage(BasicBlock, 2 * c, 2 * c, 1)
            self.diff3, self.diff4 = conv_bn(4 * c, 2 * c), conv_bn(8 * c, 2 * c)
        self.layer5_d = stage(Bottleneck, 2 * c, 2 * c, 1)                           # D: 1/8
        self.ppm = PAPPM(16 * c, ppm, 4 * c)
        self.bag = LightBag(4 * c, 4 * c) if small else Bag(4 * c, 4 * c)
        self.head = SegHead(4 * c, head, num_classes)
        self.p_head = SegHead(2 * c, head, num_classes)        # training only: l0
        self.d_head = SegHead(2 * c, c if small else head, 1)  # training only: l1 (boundary)
        self.train_only = ("p_head", "d_head")
        self.size_divisor = 32

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x
        x = self.layer2(F.relu(self.stem(x)))
        p, d = self.layer3_p(x), self.layer3_d(x)
        x = F.relu(self.layer3(x))
        p = self.pag3(p, self.compression3(x))
        d = d + upsample(self.diff3(x), d)
        p_aux = p
        x = F.relu(self.layer4(x))
        p, d = self.layer4_p(F.relu(p)), self.layer4_d(F.relu(d))
        p = self.pag4(p, self.compression4(x))
        d = d + upsample(self.diff4(x), d)
        d_aux = d
        p, d = self.layer5_p(F.relu(p)), self.layer5_d(F.relu(d))
        i = upsample(self.ppm(self.layer5(x)), p)
        out = {"logits": upsample(self.head(self.bag(p, i, d)), size)}
        if self.training:
            out["p"], out["boundary"] = upsample(self.p_head(p_aux), size), upsample(self.d_head(d_aux), size)
        return out

    def losses(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """§3.4, eq. 9: 0.4·l0 (OHEM, P head) + 20·l1 (balanced BCE, boundary) + l2 (OHEM, output) + l3 (boundary-aware)."""
        logits, boundary = outputs["logits"], outputs["boundary"]
        edge = boundary_target(target)
        aware = torch.where(boundary[:, 0].sigmoid() > 0.8, target, IGNORE_INDEX)  # l3: the output's CE on boundaries
        return {"p": 0.4 * ohem_cross_entropy(outputs["p"], target), "boundary": 20 * balanced_bce(boundary, edge),
                "seg": ohem_cross_entropy(logits, target),
                "boundary_aware": F.cross_entropy(logits, aware, ignore_index=IGNORE_INDEX) if (aware != IGNORE_INDEX).any()
                else logits.sum() * 0}


def _pidnet(config: tuple[int, int, int, int, int]):
    def build(num_classes: int, in_channels: int = 3, width_mult: float = 1.0, depth: int | None = None) -> PIDNet:
        """PIDNet; ``width_mult`` scales the base width and the PPM/head widths (1.0: the paper's; smaller for tests);
        ``depth``: n, the basic blocks of the I branch's 1/16 and 1/32 stages (default: Table 1's)."""
        m, n, c, ppm, head = config
        return PIDNet(num_classes, in_channels, m, depth or n, max(4, round(c * width_mult)), max(8, round(ppm * width_mult)),
                      max(8, round(head * width_mult)))
    return build


register("pidnet_s")(_pidnet((2, 3, 32, 96, 128)))
register("pidnet_m")(_pidnet((2, 3, 64, 96, 128)))
