"""InternImage (Wang et al., CVPR 2023): a convolutional backbone built on DCNv3, laid out like a ViT.

- Stem: two 3×3 stride-2 convolutions (C/2 then C channels), each followed by LayerNorm, GELU between: stride 4.
- Four stages of basic blocks, channels C·2^(i-1). A basic block is DCNv3 (offsets and a modulation that is
  softmax-normalised over the K sampling points of each group, both predicted from a depth-wise 3×3 conv +
  LN + GELU of the input, then linear layers: ``edgeseg.ops.DCNv3``) and an FFN (MLP ratio 4), each a residual
  branch with LayerNorm before it (pre-norm) or after it (post-norm, which the paper's large variants use),
  optional layer scale and stochastic depth (drop path, linearly increasing over the blocks).
- Between stages: a 3×3 stride-2 convolution doubling the channels + LayerNorm.
- Stacking rules of the paper: channels C_i = 2^(i-1)·C_1, groups G_i = C_i / C' (C' = 16 channels per
  group), L_1 = L_2 = L_4 ≤ L_3. InternImage-T: C_1 = 64, depths 4, 4, 18, 4, groups 4, 8, 16, 32 (30M).

Output: the features of the four stages, N×C_i×H/s×W/s at strides 4, 8, 16, 32 (NCHW, for FPN or DeepLabV3+
heads). ``output_stride`` 16 or 8 replaces the last one or two stride-2 downsamplings by stride 1 and dilates
the later stages' DCNv3 sampling grids instead (DeepLab's atrous trick), as ResNet backbones do here.

Layout: inside a stage the features are channels-last (N×H×W×C: LayerNorm and the FFN's linear layers act on
the last dimension); the DCNv3 block takes and returns NCHW, so each block hands it an NCHW view.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.ops import DCNv3


@dataclass(frozen=True)
class InternImageConfig:
    channels: int                       # C_1, the first stage's width
    depths: tuple[int, int, int, int]   # basic blocks per stage
    groups: tuple[int, int, int, int]   # DCNv3 groups per stage
    mlp_ratio: float = 4.0
    drop_path: float = 0.0              # stochastic depth of the last block (0 for the first, linear between)
    layer_scale: float | None = None    # initial value of the per-channel residual scales; None: none
    post_norm: bool = False             # LayerNorm after each branch instead of before it
    offset_scale: float = 1.0


CONFIGS: dict[str, InternImageConfig] = {
    # The paper's origin model; drop path 0.2 as its ADE20K recipe trains it.
    "t": InternImageConfig(64, (4, 4, 18, 4), (4, 8, 16, 32), drop_path=0.2),
    # A CPU-sized model for tests and quick runs: the same rules (C' = 16), the fewest blocks.
    "cpu": InternImageConfig(32, (1, 1, 2, 1), (2, 4, 8, 16), drop_path=0.1),
}


def drop_path(x: Tensor, p: float, training: bool) -> Tensor:
    """Stochastic depth: drop the whole residual branch of a sample with probability ``p`` (scaled to keep
    the expectation); the identity at inference, so nothing of it reaches an exported graph."""
    if p <= 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                            self.eps).permute(0, 3, 1, 2)


class BasicBlock(nn.Module):
    """x + DropPath(γ₁·DCNv3(LN(x))), then x + DropPath(γ₂·FFN(LN(x))); post-norm: LN after each branch.
    Channels-last in and out (N×H×W×C)."""

    def __init__(self, channels: int, group: int, mlp_ratio: float, drop: float, layer_scale: float | None,
                 post_norm: bool, offset_scale: float, dilation: int = 1):
        super().__init__()
        self.post_norm, self.drop = post_norm, drop
        self.norm1 = nn.LayerNorm(channels)
        self.dcn = DCNv3(channels, kernel_size=3, dilation=dilation, group=group, offset_scale=offset_scale)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))
        if layer_scale is None:
            self.gamma1 = self.gamma2 = None
        else:
            self.gamma1 = nn.Parameter(torch.full((channels,), float(layer_scale)))
            self.gamma2 = nn.Parameter(torch.full((channels,), float(layer_scale)))

    def _dcn(self, x: Tensor) -> Tensor:  # N×H×W×C -> N×H×W×C through the NCHW block
        return self.dcn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        if self.post_norm:
            y = self.norm1(self._dcn(x))
        else:
            y = self._dcn(self.norm1(x))
        if self.gamma1 is not None:
            y = y * self.gamma1
        x = x + drop_path(y, self.drop, self.training)
        z = self.norm2(self.mlp(x)) if self.post_norm else self.mlp(self.norm2(x))
        if self.gamma2 is not None:
            z = z * self.gamma2
        return x + drop_path(z, self.drop, self.training)


class Stage(nn.Module):
    """Basic blocks at one resolution (channels-last inside), a closing LayerNorm for pre-norm models;
    NCHW in and out."""

    def __init__(self, channels: int, depth: int, group: int, drops: list[float], cfg: InternImageConfig,
                 dilation: int = 1):
        super().__init__()
        self.blocks = nn.ModuleList([
            BasicBlock(channels, group, cfg.mlp_ratio, drops[i], cfg.layer_scale, cfg.post_norm, cfg.offset_scale,
                       dilation) for i in range(depth)])
        self.norm = nn.Identity() if cfg.post_norm else nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x).permute(0, 3, 1, 2)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), LayerNorm2d(cout))


class InternImage(nn.Module):
    """The backbone: ``forward(x)`` returns the four stages' NCHW features; ``out_channels`` and
    ``strides`` describe them."""

    def __init__(self, cfg: InternImageConfig, in_channels: int = 3, output_stride: int = 32):
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        c = cfg.channels
        for i, g in enumerate(cfg.groups):
            if (c << i) % g:
                raise ValueError(f"stage {i + 1}: {c << i} channels do not split into {g} DCNv3 groups")
        self.config = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c // 2, 3, 2, 1), LayerNorm2d(c // 2), nn.GELU(),
            nn.Conv2d(c // 2, c, 3, 2, 1), LayerNorm2d(c))
        total = sum(cfg.depths)
        drops = [cfg.drop_path * i / max(total - 1, 1) for i in range(total)]
        self.stages, self.downsamples = nn.ModuleList(), nn.ModuleList()
        self.out_channels, self.strides = [], []
        stride, dilation, start = 4, 1, 0
        for i, (depth, group) in enumerate(zip(cfg.depths, cfg.groups)):
            width = c << i
            if i > 0:
                step = 2 if stride * 2 <= output_stride else 1
                self.downsamples.append(_downsample(width // 2, width, step))
                if step == 2:
                    stride *= 2
                else:
                    dilation *= 2
            self.stages.append(Stage(width, depth, group, drops[start:start + depth], cfg, dilation))
            start += depth
            self.out_channels.append(width)
            self.strides.append(stride)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        feats = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)
            x = stage(x)
            feats.append(x)
        return feats


def internimage(config: str = "t", in_channels: int = 3, output_stride: int = 32,
                drop_path: float | None = None) -> InternImage:
    """InternImage of a named configuration (``CONFIGS``: ``t``, ``cpu``); ``drop_path`` overrides its rate."""
    if config not in CONFIGS:
        raise ValueError(f"unknown InternImage configuration '{config}'; use one of: {', '.join(CONFIGS)}")
    cfg = CONFIGS[config] if drop_path is None else replace(CONFIGS[config], drop_path=drop_path)
    return InternImage(cfg, in_channels, output_stride)


def internimage_t(in_channels: int = 3, output_stride: int = 32, drop_path: float | None = None) -> InternImage:
    return internimage("t", in_channels, output_stride, drop_path)


def internimage_cpu(in_channels: int = 3, output_stride: int = 32, drop_path: float | None = None) -> InternImage:
    return internimage("cpu", in_channels, output_stride, drop_path)
