"""EfficientViT-Seg B0 (Cai, Li, Hu, Gan, Han, "EfficientViT: Lightweight Multi-Scale Attention for High-Resolution
Dense Prediction", ICCV 2023; arXiv 2205.14756).

- Backbone (§3.2, Fig. 4): a stem (3×3 conv, depth-wise separable block), two stages of MBConv (inverted
  residuals), then two stages of an MBConv followed by EfficientViT modules. B0: widths 8/16/32/64/128, depths
  1/2/2/2/2, head dimension 16, expansion 4, Hardswish, batch norm; the later stages' MBConvs keep norm only on
  their projection (biases before).
- EfficientViT module (§3.1, Fig. 2-3): lightweight multi-scale attention (q, k, v from one 1×1 conv, a second
  scale aggregated by a 5×5 depth-wise and a grouped 1×1 conv, ReLU linear attention per head, eq. 2-3) as context,
  then an MBConv as local feature extractor, both residual.
- Head: stages 4/3/2 each 1×1-convolved to 32 channels, upsampled to 1/8 and added, one MBConv, 1×1 conv to 128
  (Hardswish) and a 1×1 classifier.
- ReLU linear attention is plain matrix products: (ReLU(K)ᵀ[V; 1]) then ReLU(Q) applied to it, the ones row giving
  the normaliser in the same product; ONNX MatMul, Div, at any H/W.
- Cityscapes (the authors' README, EfficientViT-Seg table): B0 0.7 M parameters, 4.4 G MACs at 1024×2048.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from edgeseg.models.realtime.losses import upsample
from edgeseg.models.registry import register


def conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, norm: bool = True, act: bool = False,
         bias: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    if act:
        layers.append(nn.Hardswish())
    return nn.Sequential(*layers)


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def mbconv(cin: int, cout: int, stride: int = 1, expand: int = 4, fewer_norm: bool = False) -> nn.Sequential:
    """Inverted residual body: 1×1 expand, 3×3 depth-wise, 1×1 project (norm on the projection only when
    ``fewer_norm``, the others then with biases)."""
    mid = cin * expand
    return nn.Sequential(conv(cin, mid, 1, norm=not fewer_norm, act=True, bias=fewer_norm),
                         conv(mid, mid, 3, stride, groups=mid, norm=not fewer_norm, act=True, bias=fewer_norm),
                         conv(mid, cout, 1))


class LiteMLA(nn.Module):
    """Lightweight multi-scale linear attention (§3.1): heads of ``dim`` channels, scales 1 and 5."""

    def __init__(self, channels: int, dim: int = 16):
        super().__init__()
        heads = channels // dim
        self.dim = dim
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, bias=False)
        self.aggregate = nn.Sequential(nn.Conv2d(3 * channels, 3 * channels, 5, padding=2, groups=3 * channels, bias=False),
                                       nn.Conv2d(3 * channels, 3 * channels, 1, groups=3 * heads, bias=False))
        self.proj = conv(2 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        qkv = self.qkv(x)
        qkv = torch.cat([qkv, self.aggregate(qkv)], 1)                      # N×(2·3C)×H×W
        qkv = qkv.reshape(n, -1, 3 * self.dim, h * w)                      # N×heads×3d×HW (per scale)
        q, k, v = torch.relu(qkv[:, :, :self.dim]), torch.relu(qkv[:, :, self.dim:2 * self.dim]), qkv[:, :, 2 * self.dim:]
        v = torch.cat([v, torch.ones_like(v[:, :, :1])], 2)                # the ones row: the normaliser Σ ReLU(k)
        out = (v @ k.transpose(-1, -2)) @ q                                 # (d+1)×d then (d+1)×HW: linear in HW
        out = out[:, :, :-1] / (out[:, :, -1:] + 1e-15)
        return self.proj(out.reshape(n, -1, h, w))


class EfficientViTSeg(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, widths=(8, 16, 32, 64, 128), depths=(1, 2, 2, 2, 2),
                 dim: int = 16, head: int = 32):
        super().__init__()
        w0 = widths[0]
        stem: list[nn.Module] = [conv(in_channels, w0, 3, 2, act=True)]
        stem += [Residual(nn.Sequential(conv(w0, w0, 3, groups=w0, act=True), conv(w0, w0, 1))) for _ in range(depths[0])]
        self.stem = nn.Sequential(*stem)
        self.stages = nn.ModuleList()
        cin = w0
        for i, (w, d) in enumerate(zip(widths[1:], depths[1:])):
            if i < 2:  # stages 1-2: MBConvs
                blocks: list[nn.Module] = [mbconv(cin, w, 2)] + [Residual(mbconv(w, w)) for _ in range(d - 1)]
            else:      # stages 3-4: a strided MBConv, then EfficientViT modules (attention, then an MBConv)
                blocks = [mbconv(cin, w, 2, fewer_norm=True)]
                blocks += [nn.Sequential(Residual(LiteMLA(w, dim)), Residual(mbconv(w, w, fewer_norm=True))) for _ in range(d)]
            self.stages.append(nn.Sequential(*blocks))
            cin = w
        self.inputs = nn.ModuleList(conv(c, head, 1) for c in widths[2:])  # stages 2, 3, 4 (1/8, 1/16, 1/32)
        self.middle = Residual(mbconv(head, head, fewer_norm=True))
        self.out = nn.Sequential(conv(head, head * 4, 1, act=True), nn.Conv2d(head * 4, num_classes, 1))
        self.size_divisor = 32

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats, y = [], self.stem(x)
        for stage in self.stages:
            y = stage(y)
            feats.append(y)
        f8 = feats[1]
        fused = sum(upsample(proj(f), f8) for proj, f in zip(self.inputs, feats[1:]))
        return {"logits": upsample(self.out(self.middle(fused)), x)}


@register("efficientvit_seg_b0")
def efficientvit_seg_b0(num_classes: int, in_channels: int = 3) -> EfficientViTSeg:
    """EfficientViT-Seg B0 (already the size of a reduced-width test model: 0.7 M parameters)."""
    return EfficientViTSeg(num_classes, in_channels)
