"""PP-LiteSeg (Peng et al., "PP-LiteSeg: A Superior Real-Time Semantic Segmentation Model", arXiv 2204.02681, 2022)
on STDC backbones (Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021).

- STDC (Fan et al. §3.1, Fig. 3, Table 1): a stem of two strided 3×3 convs, then stages 3-5 of STDC modules, each
  four conv blocks whose widths halve (out/2, out/4, out/8, out/8), concatenated; a strided module downsamples its
  first block's output with a depth-wise 3×3 conv and skips it through a 3×3 average pool. STDC1: 2/2/2 modules a
  stage, STDC2: 4/5/3; widths 256/512/1024 at 1/8, 1/16, 1/32.
- PP-LiteSeg §3.2-3.4, Fig. 2-4: the Simple Pyramid Pooling Module (SPPM: 1×1, 2×2 and 4×4 average pools, 1×1 convs,
  upsampled and summed, a 3×3 conv) on the 1/32 features; the Flexible and Lightweight Decoder whose channels
  shrink as resolution grows (T: 128, 64, 32; B: 128, 96, 64); the Unified Attention Fusion Module (UAFM, spatial
  attention: a sigmoid map from the mean and max over channels of both inputs, out = α·low + (1 − α)·up(high));
  the head at 1/8.
- Training (§4.1): OHEM cross-entropy on the 1/8 output and on auxiliary heads after the 1/16 and 1/32 fusions.
  The issue asks for STDC's detail guidance too (Fan et al. §3.2): a detail head on the 1/8 backbone features,
  trained with BCE + Dice against Laplacian label edges; training only, like the auxiliary heads.
- The 2×2 and 4×4 pools are adaptive (bin edges from the feature size), written as averaging matrices
  (``adaptive_pool_matrix``) because ONNX has no adaptive pooling to a size other than 1×1 at dynamic H/W.
- Parameters: the PP-LiteSeg paper's tables give accuracy and FPS only; the STDC paper's ImageNet comparison table gives
  the backbones with their classifier head: STDC1 8.44 M, STDC2 12.47 M (tests/test_realtime.py checks those).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.models.common import conv_bn_relu
from edgeseg.models.detection.lpsnet import adaptive_pool_matrix
from edgeseg.models.realtime.ddrnet import conv_bn
from edgeseg.models.realtime.losses import detail_loss, detail_target, ohem_cross_entropy, upsample
from edgeseg.models.registry import register

STDC_STAGES = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}
DECODER = {"stdc1": (32, 64, 128), "stdc2": (64, 96, 128)}  # FLD channels at 1/8, 1/16, 1/32 (T, B)


class STDCModule(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        widths = [cout // 2, cout // 4, cout // 8, cout // 8]
        self.blocks = nn.ModuleList([conv_bn_relu(cin, widths[0], 1)] +
                                    [conv_bn_relu(widths[i - 1], widths[i], 3) for i in range(1, 4)])
        self.down = conv_bn(widths[0], widths[0], 3, 2, groups=widths[0]) if stride == 2 else None
        self.skip = nn.AvgPool2d(3, 2, 1) if stride == 2 else None

    def forward(self, x: Tensor) -> Tensor:
        first = self.blocks[0](x)
        out = [first if self.skip is None else self.skip(first)]
        x = first if self.down is None else self.down(first)
        for block in self.blocks[1:]:
            x = block(x)
            out.append(x)
        return torch.cat(out, 1)


class STDC(nn.Module):
    """Returns the 1/8, 1/16 and 1/32 features (256, 512, 1024 channels at base width 64)."""

    def __init__(self, in_channels: int, stages: tuple[int, ...], base: int = 64):
        super().__init__()
        self.stem = nn.Sequential(conv_bn_relu(in_channels, base // 2, 3, 2), conv_bn_relu(base // 2, base, 3, 2))
        self.stages = nn.ModuleList()
        cin = base
        for i, n in enumerate(stages):
            cout = base * 4 * 2 ** i
            self.stages.append(nn.Sequential(*(STDCModule(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(n))))
            cin = cout
        self.out_channels = [base * 4, base * 8, base * 16]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        return feats


class SPPM(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, bins: tuple[int, ...] = (1, 2, 4)):
        super().__init__()
        self.bins = bins
        self.convs = nn.ModuleList(conv_bn_relu(cin, mid, 1) for _ in bins)
        self.out = conv_bn_relu(mid, cout, 3)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        total = torch.zeros((), dtype=x.dtype, device=x.device)
        for bins, conv in zip(self.bins, self.convs):
            if bins == 1:
                pooled = x.mean((2, 3), keepdim=True)
            else:
                pooled = torch.einsum("ih,nchw,jw->ncij", adaptive_pool_matrix(h, bins, x), x, adaptive_pool_matrix(w, bins, x))
            total = total + upsample(conv(pooled), x)
        return self.out(total)


class UAFM(nn.Module):
    """Unified Attention Fusion Module with spatial attention (PP-LiteSeg §3.3, Fig. 4(b))."""

    def __init__(self, low: int, high: int, cout: int):
        super().__init__()
        self.low = conv_bn_relu(low, high, 3)
        self.attention = nn.Sequential(conv_bn_relu(4, 2, 3), conv_bn(2, 1, 3))
        self.out = conv_bn_relu(high, cout, 3)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        low, high = self.low(low), upsample(high, low)
        stats = torch.cat([low.mean(1, keepdim=True), low.amax(1, keepdim=True),
                           high.mean(1, keepdim=True), high.amax(1, keepdim=True)], 1)
        alpha = torch.sigmoid(self.attention(stats))
        return self.out(low * alpha + high * (1 - alpha))


def seg_head(cin: int, mid: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, mid, 3), nn.Conv2d(mid, num_classes, 1))


class PPLiteSeg(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, backbone: str, width_mult: float = 1.0):
        super().__init__()
        self.backbone = STDC(in_channels, STDC_STAGES[backbone], max(8, round(64 * width_mult)))
        c8, c16, c32 = self.backbone.out_channels
        d8, d16, d32 = (max(4, round(c * width_mult)) for c in DECODER[backbone])
        self.sppm = SPPM(c32, d32, d32)
        self.fuse32, self.fuse16, self.fuse8 = UAFM(c32, d32, d32), UAFM(c16, d32, d16), UAFM(c8, d16, d8)
        self.head = seg_head(d8, d8 if backbone == "stdc1" else d16, num_classes)
        # training only: auxiliary heads after the 1/16 and 1/32 fusions, and STDC's detail head on the 1/8 features
        self.aux16, self.aux32 = seg_head(d16, d16, num_classes), seg_head(d32, d16, num_classes)
        self.detail = seg_head(c8, d16, 1)
        self.num_classes = num_classes
        self.train_only = ("aux16", "aux32", "detail")
        self.size_divisor = 32

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        f8, f16, f32 = self.backbone(x)
        y32 = self.fuse32(f32, self.sppm(f32))
        y16 = self.fuse16(f16, y32)
        y8 = self.fuse8(f8, y16)
        out = {"logits": upsample(self.head(y8), x)}
        if self.training:
            out["aux16"], out["aux32"] = upsample(self.aux16(y16), x), upsample(self.aux32(y32), x)
            out["detail"] = upsample(self.detail(f8), x)
        return out

    def losses(self, outputs: dict[str, Tensor], target: Tensor) -> dict[str, Tensor]:
        """PP-LiteSeg §4.1: OHEM cross-entropy on the output and both auxiliary heads (weight 1 each); STDC §3.2:
        the detail loss (BCE + Dice) on the detail head."""
        return {"seg": ohem_cross_entropy(outputs["logits"], target),
                "aux16": ohem_cross_entropy(outputs["aux16"], target), "aux32": ohem_cross_entropy(outputs["aux32"], target),
                "detail": detail_loss(outputs["detail"], detail_target(target, self.num_classes))}


def _ppliteseg(num_classes: int, in_channels: int = 3, backbone: str = "stdc1", width_mult: float = 1.0) -> PPLiteSeg:
    """PP-LiteSeg-T (STDC1) or -B (STDC2); ``width_mult`` scales every width (1.0: the paper's; smaller for tests)."""
    return PPLiteSeg(num_classes, in_channels, backbone, width_mult)


register("ppliteseg_t", backbone="stdc1")(_ppliteseg)
register("ppliteseg_b", backbone="stdc2")(_ppliteseg)
