"""BiSeNet V2 (Yu, Gao, Wang, Yu, Shen, Sang, "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation", IJCV 2021; arXiv 2004.02147).

- §4.1, Table 1: the Detail Branch, wide and shallow (64, 64, 128 channels at 1/2, 1/4, 1/8), plain 3×3 conv-BN-ReLU.
- §4.2, Table 1, Figs. 3-5: the Semantic Branch, narrow (λ = 1/4) and deep: the Stem Block (Fig. 4a: a strided conv,
  then a 1×1/strided-3×3 path beside a max-pool, concatenated, fused), Gather-and-Expansion layers (Fig. 5, expansion
  ε = 6; the strided one with two depth-wise convolutions and a depth-wise separable shortcut) and the Context
  Embedding block (Fig. 4b: global average pooling, BN, 1×1 conv added back, 3×3 conv).
- §4.3, Fig. 6: the Bilateral Guided Aggregation layer: each branch gates the other at its own resolution.
- §4.4, Fig. 7: the booster heads on the Stem and Semantic stages 3, 4 and 5 (before CE), training only, each with
  its own cross-entropy (OHEM, §5.1); the segmentation head (3×3 conv to C_t = 1024, 1×1 conv to the classes).
- Cost: 3.4 M parameters, as later papers' comparison tables quote BiSeNetV2 (ours: 3.36 M without the boosters);
  the IJCV paper's Table 8 gives 21.15 GFLOPs at 512×1024, ours counts 24.6 G multiply-adds there (the 3×3 conv to
  1024 channels of the head alone is 9.7 G of it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.models.common import conv_bn_relu
from edgeseg.models.realtime.ddrnet import GlobalPool, conv_bn
from edgeseg.models.realtime.losses import ohem_cross_entropy, upsample
from edgeseg.models.registry import register


def dwconv_bn(c: int, stride: int = 1) -> nn.Sequential:
    return conv_bn(c, c, 3, stride, groups=c)


class StemBlock(nn.Module):
    def __init__(self, cin: int, c: int):
        super().__init__()
        self.conv = conv_bn_relu(cin, c, 3, 2)
        self.left = nn.Sequential(conv_bn_relu(c, c // 2, 1), conv_bn_relu(c // 2, c, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = conv_bn_relu(2 * c, c, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], 1))


class GatherExpansion(nn.Module):
    """Fig. 5(b) (stride 1) and (c) (stride 2): 3×3 conv, depth-wise 3×3 expansion (×6), 1×1 projection, residual."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        mid = cin * expansion
        layers: list[nn.Module] = [conv_bn_relu(cin, cin, 3), conv_bn(cin, mid, 3, stride, groups=cin)]
        if stride == 2:  # the second depth-wise conv widens the receptive field after striding (Fig. 5c)
            layers += [nn.ReLU(inplace=True), dwconv_bn(mid)]
        layers += [nn.ReLU(inplace=True), conv_bn(mid, cout, 1)]
        self.body = nn.Sequential(*layers)
        self.shortcut = (nn.Sequential(dwconv_bn(cin, 2), conv_bn(cin, cout, 1)) if stride == 2 or cin != cout
                         else nn.Identity())

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class ContextEmbedding(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.pool = nn.Sequential(GlobalPool(), nn.BatchNorm2d(c), conv_bn_relu(c, c, 1))
        self.conv = conv_bn_relu(c, c, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x + self.pool(x))


class GuidedAggregation(nn.Module):
    """Fig. 6: detail (1/8) × sigmoid(upsampled semantic) + upsampled(pooled detail (1/32) × sigmoid(semantic))."""

    def __init__(self, c: int):
        super().__init__()
        self.detail_keep = nn.Sequential(dwconv_bn(c), nn.Conv2d(c, c, 1, bias=False))
        self.detail_down = nn.Sequential(conv_bn(c, c, 3, 2), nn.AvgPool2d(3, 2, 1))
        self.semantic_up = conv_bn(c, c, 3)
        self.semantic_keep = nn.Sequential(dwconv_bn(c), nn.Conv2d(c, c, 1, bias=False))
        self.fuse = conv_bn_relu(c, c, 3)

    def forward(self, detail: Tensor, semantic: Tensor) -> Tensor:
        high = self.detail_keep(detail) * torch.sigmoid(upsample(self.semantic_up(semantic), detail))
        low = self.detail_down(detail) * torch.sigmoid(self.semantic_keep(semantic))
        return self.fuse(high + upsample(low, detail))


class Head(nn.Module):
    """§4.4: 3×3 conv-BN-ReLU to ``mid`` channels, dropout, 1×1 conv to the classes."""

    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin, mid, 3), nn.Dropout(0.1), nn.Conv2d(mid, num_classes, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class BiSeNetV2(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, width_mult: float = 1.0, head: int = 1024):
        super().__init__()
        d1, d3, s1, s3, s4, s5 = (max(4, round(c * width_mult)) for c in (64, 128, 16, 32, 64, 128))
        self.detail = nn.Sequential(conv_bn_relu(in_channels, d1, 3, 2), conv_bn_relu(d1, d1),
                                    conv_bn_relu(d1, d1, 3, 2), conv_bn_relu(d1, d1), conv_bn_relu(d1, d1),
                                    conv_bn_relu(d1, d3, 3, 2), conv_bn_relu(d3, d3), conv_bn_relu(d3, d3))
        self.stem = StemBlock(in_channels, s1)
        self.stage3 = nn.Sequential(GatherExpansion(s1, s3, 2), GatherExpansion(s3, s3))
        self.stage4 = nn.Sequential(GatherExpansion(s3, s4, 2), GatherExpansion(s4, s4))
        self.stage5 = nn.Sequential(GatherExpansion(s4, s5, 2), *(GatherExpansion(s5, s5) for _ in range(3)))
        self.context = ContextEmbedding(s5)
        self.aggregate = GuidedAggregation(d3)  # the semantic branch ends at the detail branch's width (128)
        self.head = Head(d3, max(8, round(head * width_mult)), num_classes)
        booster = max(8, round(128 * width_mult))
        self.boosters = nn.ModuleList(Head(c, booster, num_classes) for c in (s1, s3, s4, s5))  # training only
        self.train_only = ("boosters",)
        self.size_divisor = 32

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        detail = self.detail(x)
        s2 = self.stem(x)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        s5 = self.stage5(s4)
        out = {"logits": upsample(self.head(self.aggregate(detail, self.context(s5))), x)}
        if self.training:
            out["boosters"] = torch.stack([upsample(h(f), x) for h, f in zip(self.boosters, (s2, s3, s4, s5))])
        return out

    def losses(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """§4.4 eq. (2): the output's loss plus each booster's, weight 1 (α = 1), all OHEM cross-entropy (§5.1)."""
        terms = {"seg": ohem_cross_entropy(outputs["logits"], target)}
        for i, logits in enumerate(outputs["boosters"]):
            terms[f"booster{i}"] = ohem_cross_entropy(logits, target)
        return terms


@register("bisenetv2")
def bisenetv2(num_classes: int, in_channels: int = 3, width_mult: float = 1.0) -> BiSeNetV2:
    """BiSeNetV2; ``width_mult`` scales every width (1.0: the paper's; smaller for tests)."""
    return BiSeNetV2(num_classes, in_channels, width_mult)
