"""LR-ASPP on MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019, §6.4, Fig. 10, Table 7).

- Backbone: torchvision's MobileNetV3-Large blocks with the segmentation changes of §6.4: the last stage dilated
  (output stride 16) and its channels halved ("RF2"), its first block's expansion (672 → 336) included, as the
  paper's TensorFlow models reduce the whole stage (torchvision's ``reduced_tail`` keeps 672 there: 1.75 M in all).
- Head (Fig. 10): the 1/16 features through a 1×1 conv-BN-ReLU (128, "SH"), multiplied by a sigmoid gate from
  pooled features and a 1×1 conv, upsampled to 1/8, classified, plus a classifier of the 1/8 features; upsampled.
  The paper pools with a 49×49 kernel at stride (16, 20) for 1024×2048 training crops; the gate pools globally here
  (as torchvision's LR-ASPP does), so it is defined at any input size and exports as one mean.
- Table 7 (Cityscapes val, OS 16): V3-Large + RF2 + LR-ASPP(128): 72.64 mIoU, 1.51 M parameters, 9.74 B MAdds at
  1024×2048. torchvision's ``lraspp_mobilenet_v3_large`` keeps the full tail (3.2 M).
"""
from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

from edgeseg.models.common import conv_bn_relu
from edgeseg.models.realtime.ddrnet import GlobalPool
from edgeseg.models.realtime.losses import upsample
from edgeseg.models.registry import register


class LRASPP(nn.Module):
    def __init__(self, num_classes: int, in_channels: int = 3, head: int = 128, width_mult: float = 1.0):
        super().__init__()
        setting, last = _mobilenet_v3_conf("mobilenet_v3_large", width_mult=width_mult, reduced_tail=True, dilated=True)
        setting[-3].expanded_channels //= 2  # RF2 halves the last stage's first expansion too
        features = MobileNetV3(setting, last).features
        if in_channels != 3:
            first = features[0][0]
            features[0][0] = nn.Conv2d(in_channels, first.out_channels, 3, 2, 1, bias=False)
        self.low, self.high = features[:7], features[7:]  # 1/8 (40 channels at width 1), 1/16 (480)
        low_c, high_c = features[6].out_channels, features[-1].out_channels
        self.cbr = conv_bn_relu(high_c, head, 1)
        self.gate = nn.Sequential(GlobalPool(), nn.Conv2d(high_c, head, 1, bias=False), nn.Sigmoid())
        self.low_classifier, self.high_classifier = nn.Conv2d(low_c, num_classes, 1), nn.Conv2d(head, num_classes, 1)
        self.size_divisor = 32

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        low = self.low(x)
        high = self.high(low)
        high = upsample(self.cbr(high) * self.gate(high), low)
        return {"logits": upsample(self.low_classifier(low) + self.high_classifier(high), x)}


@register("lraspp_mobilenetv3")
def lraspp_mobilenetv3(num_classes: int, in_channels: int = 3, width_mult: float = 1.0) -> LRASPP:
    """LR-ASPP, MobileNetV3-Large backbone; ``width_mult`` scales the backbone (1.0: the paper's; smaller for tests)."""
    return LRASPP(num_classes, in_channels, width_mult=width_mult)
