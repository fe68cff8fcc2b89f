"""Building blocks shared by the zoo."""
from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, bn: bool = True,
                 groups: int = 1) -> nn.Sequential:
    pad = dilation * (k - 1) // 2
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, groups=groups, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def separable_conv_bn_relu(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    """Atrous separable convolution (DeepLabV3+ §3.1, Fig. 3): a depth-wise 3×3 (dilated) conv-BN-ReLU, then a
    point-wise 1×1 conv-BN-ReLU; ~k² fewer multiply-adds than a 3×3 convolution of the same widths."""
    return nn.Sequential(conv_bn_relu(cin, cin, 3, dilation=dilation, groups=cin), conv_bn_relu(cin, cout, 1))


def bilinear_kernel(channels: int, k: int) -> torch.Tensor:
    """Weights making a k×k transposed convolution a per-channel bilinear upsampler (FCN paper, §3.3)."""
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = torch.arange(k, dtype=torch.float32)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, k, k)
    weight[range(channels), range(channels)] = filt
    return weight


def bilinear_upsampler(channels: int, factor: int, learnable: bool = True) -> nn.ConvTranspose2d:
    """A ConvTranspose2d that upsamples exactly ×factor (input H → factor·H), initialised to bilinear."""
    k = 2 * factor
    up = nn.ConvTranspose2d(channels, channels, k, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, k))
    up.weight.requires_grad_(learnable)
    return up


def set_output_stride(blocks: list[nn.Module], input_stride: int, output_stride: int) -> None:
    """Turn the strides of ``blocks`` (in order) that would exceed ``output_stride`` into dilation.

    ``input_stride`` is the stride of the features entering the first block. A block whose stride is
    removed keeps the dilation before it (as DeepLab does), blocks after it use twice as much.
    Works on any block made of Conv2d layers (ResNet Basic/Bottleneck, MobileNetV3 inverted residuals).
    """
    stride, dilation = input_stride, 1
    for block in blocks:
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        downsamples = any(c.stride[0] == 2 for c in convs)
        block_dilation = dilation
        if downsamples:
            if stride * 2 > output_stride:
                for c in convs:
                    c.stride = (1, 1)
                dilation *= 2
            else:
                stride *= 2
        for c in convs:
            if c.kernel_size[0] > 1:
                c.dilation = (block_dilation, block_dilation)
                c.padding = (block_dilation * (c.kernel_size[0] - 1) // 2,) * 2


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: nn.Module, in_channels: int, size: tuple[int, int]) -> float:
    """Forward GFLOPs (multiply and add counted separately) of a 1×C×H×W input, by torch's flop counter.
    Runs on whatever device the model is on: build it under ``torch.device("meta")`` to count for free."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


class TorchvisionSegmentation(nn.Module):
    """A torchvision segmentation model (``torchvision.models.segmentation.<name>``, random weights) under the zoo's
    contract: ``{"logits"}`` out, ``edgeseg_config`` and ``size_divisor``, so that it goes where a zoo model goes
    (``edgeseg.bench.bench_model``, ``default_meta``); e.g. torchvision's LR-ASPP as a reference for the real-time zoo."""

    def __init__(self, name: str, num_classes: int):
        import torchvision

        super().__init__()
        self.net = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=num_classes)
        self.edgeseg_config = {"name": name, "num_classes": num_classes, "in_channels": 3}
        self.size_divisor = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": self.net(x)["out"]}
