"""FCN-32s/16s/8s (Long, Shelhamer, Darrell): a classification net cast as convolutions, 1×1 score
layers on pool5/pool4/pool3, skip fusion by summation and transposed-convolution upsampling
initialised to bilinear. Backbones: VGG16 (the paper's, fc6/fc7 as 7×7/1×1 convolutions) and ResNet-18.
fc6 is padded to keep sizes aligned, so inputs must be multiples of 32 (no 100-pixel input padding).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18, vgg16

from edgeseg.models.common import bilinear_upsampler
from edgeseg.models.registry import register


class VGG16Features(nn.Module):
    """VGG16 convolutions returning (pool3, pool4, fc7)."""

    def __init__(self, in_channels: int, fc_channels: int = 4096, dropout: float = 0.5):
        super().__init__()
        feats = vgg16(weights=None).features
        if in_channels != 3:
            feats[0] = nn.Conv2d(in_channels, 64, 3, padding=1)
        self.to_pool3 = feats[:17]
        self.to_pool4 = feats[17:24]
        self.to_pool5 = feats[24:]
        self.fc = nn.Sequential(
            nn.Conv2d(512, fc_channels, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
            nn.Conv2d(fc_channels, fc_channels, 1), nn.ReLU(inplace=True), nn.Dropout2d(dropout),
        )
        self.channels = (256, 512, fc_channels)

    def forward(self, x):
        p3 = self.to_pool3(x)
        p4 = self.to_pool4(p3)
        return p3, p4, self.fc(self.to_pool5(p4))


class ResNet18Features(nn.Module):
    """ResNet-18 stages at strides 8, 16, 32."""

    def __init__(self, in_channels: int):
        super().__init__()
        net = resnet18(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        self.layer3, self.layer4 = net.layer3, net.layer4
        self.channels = (128, 256, 512)

    def forward(self, x):
        c3 = self.stem(x)
        c4 = self.layer3(c3)
        return c3, c4, self.layer4(c4)


class FCN(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int, stride: int):
        super().__init__()
        if stride not in (8, 16, 32):
            raise ValueError(f"FCN stride must be 8, 16 or 32, got {stride}")
        self.backbone, self.stride = backbone, stride
        c3, c4, c5 = backbone.channels
        self.score_fr = nn.Conv2d(c5, num_classes, 1)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
            self.up2_fr = bilinear_upsampler(num_classes, 2)
            # The paper zero-initialises skip scores so training starts from the coarser net.
            nn.init.zeros_(self.score_pool4.weight)
            nn.init.zeros_(self.score_pool4.bias)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
            self.up2_pool4 = bilinear_upsampler(num_classes, 2)
            nn.init.zeros_(self.score_pool3.weight)
            nn.init.zeros_(self.score_pool3.bias)
        # The last upsampling stays fixed bilinear, as in the paper.
        self.up_final = bilinear_upsampler(num_classes, stride, learnable=False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p3, p4, fr = self.backbone(x)
        score = self.score_fr(fr)
        if self.stride <= 16:
            score = self.up2_fr(score) + self.score_pool4(p4)
        if self.stride == 8:
            score = self.up2_pool4(score) + self.score_pool3(p3)
        return {"logits": self.up_final(score)}


def _fcn(num_classes: int, in_channels: int, stride: int, backbone: str, fc_channels: int = 4096) -> FCN:
    if backbone == "vgg16":
        feats: nn.Module = VGG16Features(in_channels, fc_channels)
    elif backbone == "resnet18":
        feats = ResNet18Features(in_channels)
    else:
        raise ValueError(f"FCN backbone must be vgg16 or resnet18, got {backbone}")
    return FCN(feats, num_classes, stride)


for _b in ("vgg16", "resnet18"):
    for _s in (32, 16, 8):
        register(f"fcn{_s}s_{_b}", stride=_s, backbone=_b)(_fcn)
