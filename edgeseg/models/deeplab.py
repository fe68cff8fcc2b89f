"""DeepLabV3+ (Chen et al.): an atrous backbone (output stride 16 or 8), Atrous Spatial Pyramid
Pooling (1×1 conv, three 3×3 atrous convs, image-level pooling) and a decoder that fuses the
×4-upsampled ASPP output with stride-4 low-level features. Backbones: ResNet-18/50, MobileNetV3-Large, and
any multi-scale backbone of ``edgeseg.models.backbones`` (InternImage: its stride-4 and last features).

On MobileNetV3 the ASPP's atrous convolutions and the decoder's two 3×3 convolutions are atrous separable ones
(depth-wise then point-wise: the paper's "SC" configuration, §3.2 and Table 5, which its efficient models use).
With plain 3×3 convolutions the stride-4 decoder alone was 62 % of the mobile model's ONNX Runtime time at 512²
(2 × 3×3 convs of 304→256 and 256→256 channels at 128×128: 21 of its 30 GMACs) and ASPP 16 %.
"""
from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50

from edgeseg.models.backbones import internimage
from edgeseg.models.common import conv_bn_relu, separable_conv_bn_relu, set_output_stride
from edgeseg.models.registry import register

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, ...], separable: bool = False):
        super().__init__()
        atrous = separable_conv_bn_relu if separable else (lambda i, o, dilation: conv_bn_relu(i, o, 3, dilation=dilation))
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, 1)] + [atrous(cin, cout, dilation=r) for r in rates])
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn_relu(cout * (len(rates) + 2), cout, 1), nn.Dropout(0.1))

    def forward(self, x):
        feats = [b(x) for b in self.branches]
        feats.append(F.interpolate(self.image_pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(feats, dim=1))


class ResNetBackbone(nn.Module):
    def __init__(self, depth: int, in_channels: int, output_stride: int):
        super().__init__()
        net = {18: resnet18, 50: resnet50}[depth](weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.high = net.layer1, nn.Sequential(net.layer2, net.layer3, net.layer4)
        set_output_stride([b for layer in self.high for b in cast(nn.Sequential, layer)], 4, output_stride)
        expansion = 4 if depth == 50 else 1
        self.low_channels, self.high_channels = 64 * expansion, 512 * expansion

    def forward(self, x):
        low = self.layer1(self.stem(x))
        return low, self.high(low)


class MobileNetV3Backbone(nn.Module):
    def __init__(self, in_channels: int, output_stride: int):
        super().__init__()
        feats = mobilenet_v3_large(weights=None).features
        if in_channels != 3:
            feats[0][0] = nn.Conv2d(in_channels, 16, 3, 2, 1, bias=False)
        self.low = feats[:4]  # stride 4, 24 channels
        self.high = feats[4:]
        set_output_stride(list(self.high), 4, output_stride)
        self.low_channels, self.high_channels = 24, 960

    def forward(self, x):
        low = self.low(x)
        return low, self.high(low)


class MultiScaleBackbone(nn.Module):
    """A backbone returning features at strides 4…32 (``out_channels``), seen as DeepLabV3+ takes one:
    (the stride-4 features, the last features)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        channels = cast(list[int], body.out_channels)
        self.low_channels, self.high_channels = channels[0], channels[-1]

    def forward(self, x):
        feats = self.body(x)
        return feats[0], feats[-1]


class DeepLabV3Plus(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, output_stride: int, aspp_channels: int = 256,
                 separable: bool = False):
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(cast(int, backbone.high_channels), aspp_channels, ASPP_RATES[output_stride], separable)
        self.low_proj = conv_bn_relu(cast(int, backbone.low_channels), 48, 1)
        conv = separable_conv_bn_relu if separable else conv_bn_relu
        self.decoder = nn.Sequential(conv(aspp_channels + 48, 256), conv(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, 1)
        self.size_divisor = 32

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low, high = self.backbone(x)
        low = self.low_proj(low)
        high = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return {"logits": F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)}


def _deeplab(num_classes: int, in_channels: int, backbone: str, output_stride: int = 16) -> DeepLabV3Plus:
    if output_stride not in ASPP_RATES:
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    if backbone in ("resnet18", "resnet50"):
        bb: nn.Module = ResNetBackbone(int(backbone[6:]), in_channels, output_stride)
    elif backbone == "mobilenetv3":
        bb = MobileNetV3Backbone(in_channels, output_stride)
    else:
        raise ValueError(f"DeepLabV3+ backbone must be resnet18, resnet50 or mobilenetv3, got {backbone}")
    return DeepLabV3Plus(bb, num_classes, output_stride, separable=backbone == "mobilenetv3")


for _b in ("resnet18", "resnet50", "mobilenetv3"):
    for _os in (16, 8):
        register(f"deeplabv3plus_{_b}_os{_os}", backbone=_b, output_stride=_os)(_deeplab)


def _deeplab_internimage(num_classes: int, in_channels: int, config: str, output_stride: int = 16,
                         drop_path: float | None = None) -> DeepLabV3Plus:
    """DeepLabV3+ on InternImage (DCNv3 stages); ``drop_path``: the backbone's stochastic depth rate
    (default: the configuration's, 0.2 for -T)."""
    if output_stride not in ASPP_RATES:
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    body = internimage(config, in_channels, output_stride, drop_path)
    return DeepLabV3Plus(MultiScaleBackbone(body), num_classes, output_stride)


register("deeplabv3plus_internimage_t", config="t", output_stride=16)(_deeplab_internimage)
register("deeplabv3plus_internimage_cpu", config="cpu", output_stride=16)(_deeplab_internimage)
