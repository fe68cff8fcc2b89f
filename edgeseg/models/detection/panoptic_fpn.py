"""Panoptic FPN (Kirillov et al., 2019): Mask R-CNN plus a semantic segmentation branch on the same FPN,
merged into panoptic segments inside the graph.

- Instance branch: edgeseg's Mask R-CNN (``maskrcnn.py``) over the thing classes only (its label j is the
  j-th thing class; 0 is background, torchvision's convention), trained with torchvision's losses.
- Semantic branch (the paper's): from each of P2–P5, stages of 3×3 conv + GroupNorm + ReLU + 2× bilinear
  upsampling until 1/4 (P2 one stage without upsampling), summed, a 1×1 conv to all K classes, 4× bilinear
  upsampling to the input; per-pixel cross entropy weighted by ``SEMANTIC_LOSS_WEIGHT``.
- Merge (``postprocess.panoptic_merge``, on the mask head's masks and their boxes): instances by score over ``instance_score_threshold``, each keeping
  its unoccupied pixels unless more than ``overlap_threshold`` of it is taken; then each stuff class's
  unoccupied semantic pixels if there are at least ``min_stuff_area``. Semantic pixels of a thing class
  that no instance covers stay void, as the paper's "other" class does.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from edgeseg.models.detection.maskrcnn import MaskRCNN, build_maskrcnn
from edgeseg.models.detection.postprocess import panoptic_merge, thing_first_order
from edgeseg.models.registry import register

SEMANTIC_LOSS_WEIGHT = 0.5  # λs of the paper's COCO setting (λi = 1 for the instance losses)
IGNORE_INDEX = 255


def _stage(cin: int, cout: int, upsample: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                               nn.GroupNorm(32 if cout % 32 == 0 else 1, cout), nn.ReLU(inplace=True)]
    if upsample:
        layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


class SemanticFPNHead(nn.Module):
    """P2–P5 (strides 4–32) -> K×H×W class scores at the input resolution."""

    def __init__(self, fpn_channels: int, channels: int, num_classes: int):
        super().__init__()
        self.levels = nn.ModuleList()
        for level in range(4):  # P2 (1/4): one stage, no upsampling; P(k): k−2 upsampling stages
            stages = [_stage(fpn_channels if i == 0 else channels, channels, upsample=level > 0) for i in range(max(level, 1))]
            self.levels.append(nn.Sequential(*stages))
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        fused = sum(head(f) for head, f in zip(self.levels, features))
        return F.interpolate(self.classifier(fused), size=size, mode="bilinear", align_corners=False)


class PanopticFPN(MaskRCNN):
    task = "panoptic"
    size_divisor = 32  # the semantic head and the merge work at the padded size: the runtimes pad (mirrored)

    def __init__(self, detector: MaskRCNN, num_classes: int, thing_classes: list[int], semantic_channels: int = 128,
                 overlap_threshold: float = 0.5, min_stuff_area: int = 64, instance_score_threshold: float = 0.5):
        super().__init__(detector.net)
        thing_first_order(num_classes, thing_classes)  # refuses an empty or full thing set
        self.thing_classes = sorted(set(thing_classes))
        self.semantic_head = SemanticFPNHead(detector.net.backbone.out_channels, semantic_channels, num_classes)
        # detector label j (1..T) -> data-set class; data-set class -> detector label (0: not a thing)
        self.register_buffer("to_class", torch.tensor([0] + self.thing_classes), persistent=False)
        to_label = torch.zeros(num_classes, dtype=torch.int64)
        to_label[self.thing_classes] = torch.arange(1, len(self.thing_classes) + 1)
        self.register_buffer("to_label", to_label, persistent=False)
        self.overlap_threshold, self.min_stuff_area = overlap_threshold, min_stuff_area
        self.instance_score_threshold = instance_score_threshold

    def _semantic(self, x: Tensor, features: dict[str, Tensor]) -> Tensor:
        return self.semantic_head([features[k] for k in list(features)[:4]], (x.shape[-2], x.shape[-1]))

    def losses(self, x: Tensor, targets: list[dict], features: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Mask R-CNN's losses on the thing instances, plus the semantic branch's weighted cross entropy."""
        features = self.net.backbone(x) if features is None else features
        things = []
        for t in targets:
            keep = self.to_label[t["labels"]] > 0
            things.append({"boxes": t["boxes"][keep], "labels": self.to_label[t["labels"][keep]], "masks": t["masks"][keep]})
        losses = super().losses(x, things, features)
        semantic = torch.stack([t["semantic"] for t in targets]).to(x.device)
        losses["loss_semantic"] = SEMANTIC_LOSS_WEIGHT * F.cross_entropy(self._semantic(x, features), semantic,
                                                                         ignore_index=IGNORE_INDEX)
        return losses

    def forward(self, x: Tensor, targets: list[dict] | None = None) -> dict[str, Tensor]:
        if self.training and targets is not None:
            return self.losses(x, targets)
        features = self.net.backbone(x)
        found = self.detect(x, features, mask_probs=True)
        # The mask head's 28×28 masks and their boxes: the merge pastes each inside its box (no N×D×H×W masks).
        return panoptic_merge(self._semantic(x, features), found["mask_probs"], found["scores"],
                              self.to_class[found["labels"]], self.thing_classes, self.overlap_threshold,
                              self.min_stuff_area, self.instance_score_threshold, boxes=found["boxes"], mask_rule="paste")


@register("panoptic_fpn_resnet18", task="panoptic", depth=18)
@register("panoptic_fpn_resnet50", task="panoptic", depth=50)
def _panoptic_fpn(depth: int, num_classes: int, in_channels: int, thing_classes: list[int] | None = None,
                  max_detections: int = 100, proposals: int = 1000, anchor_size: int = 32, train_proposals: int = 2000,
                  rpn_batch_size_per_image: int = 256, box_batch_size_per_image: int = 512, mask_channels: int = 256,
                  representation_size: int = 1024, semantic_channels: int = 128, min_stuff_area: int = 64):
    """``thing_classes``: the data set's thing class indices (default: every class but 0)."""
    things = list(thing_classes) if thing_classes is not None else list(range(1, num_classes))
    detector = build_maskrcnn(depth, len(set(things)) + 1, in_channels, max_detections, proposals, anchor_size,
                              train_proposals, rpn_batch_size_per_image, box_batch_size_per_image, mask_channels,
                              representation_size)
    return PanopticFPN(detector, num_classes, things, semantic_channels, min_stuff_area=min_stuff_area)


__all__ = ["PanopticFPN", "SemanticFPNHead"]
