"""LPSNet (Hong et al., "LPSNet: a lightweight solution for fast panoptic segmentation", CVPR 2021): a
one-stage, anchor-free, proposal-free panoptic network, with its whole inference in the graph.

- Backbone: torchvision's ResNet (C2–C5 from its four stages), or InternImage (``edgeseg.models.backbones``:
  its four DCNv3 stages at strides 4, 8, 16, 32 are C2–C5); a pyramid pooling module (PSPNet's bins 1, 2, 3, 6) on C5; torchvision's
  ``FeaturePyramidNetwork`` gives P2–P5 and ``LastLevelP6P7`` P6–P7 (strides 4..128).
- Box head (FCOS-like), shared over P3–P7: a classification tower giving one sigmoid score per thing class,
  and a regression tower giving [l, t, r, b] (distances from the location to the box sides, exp(s·x)·stride
  with a learnt s per level) and border-ness, sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b)).
  Training targets: a location is positive for a thing when it lies inside the thing's ground-truth MASK
  (not merely its box) and the thing's size fits the level (FCOS's ranges: max(l,t,r,b) in
  (0, s], (s, 2s], (2s, 4s], (4s, 8s], (8s, ∞) for P3..P7, s = ``object_size``); a location inside several
  goes to the thing whose border-ness target is closest to the border-ness the head predicts there (the
  paper's "closest border-ness" rule). Losses: sigmoid focal loss (classes), generalised IoU loss (boxes),
  binary cross entropy (border-ness), each over the positive count.
- Semantic head: P2–P5 each through its own modulated deformable convolution (DCNv2, offsets and mask
  from a 3×3 convolution), upsampled bilinearly to 1/4, concatenated, a 1×1 convolution to the classes,
  upsampled to the input. Pixel-wise cross entropy (255 ignored), weighted by ``semantic_loss_weight``.
- Panoptic head (non-parametric): detection score = class score × border-ness; top-k per level, boxes
  decoded, class-wise NMS (``edgeseg.ops.nms_keep``) to D = ``max_detections``; each box's mask is the
  pixels inside it whose semantic argmax is its class; ``panoptic_merge`` pastes them by score, reading each
  only inside its box (mask_rule "box_class": no N×D×H×W masks in the graph).

Inference is fixed-size (as ``MaskRCNN.detect``): candidates are never dropped, they score −1; every top-k is
over a padded block, so k never depends on the input size. Output: ``PANOPTIC_OUTPUTS`` (see postprocess).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.ops import FeaturePyramidNetwork, generalized_box_iou_loss, sigmoid_focal_loss
from torchvision.ops import boxes as box_ops
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from edgeseg import ops
from edgeseg.errors import ModelError
from edgeseg.models.backbones import internimage
from edgeseg.models.detection.maskrcnn import _INVALID, _topk, select_detections
from edgeseg.models.detection.postprocess import panoptic_merge, thing_first_order
from edgeseg.models.registry import register

IGNORE_INDEX = 255
BOX_STRIDES = (8, 16, 32, 64, 128)  # P3..P7
PPM_BINS = (1, 2, 3, 6)


def borderness(ltrb: Tensor) -> Tensor:
    """…×4 distances (l, t, r, b) -> border-ness sqrt(min(l,r)/max(l,r) · min(t,b)/max(t,b)) (0 where a side is 0)."""
    l, t, r, b = ltrb.clamp(min=0).unbind(-1)
    h = torch.minimum(l, r) / torch.maximum(l, r).clamp(min=1e-6)
    v = torch.minimum(t, b) / torch.maximum(t, b).clamp(min=1e-6)
    return (h * v).sqrt()


def adaptive_pool_matrix(size, bins: int, like: Tensor) -> Tensor:
    """bins×size averaging weights of adaptive average pooling along one axis (bin i covers
    [floor(i·size/bins), ceil((i+1)·size/bins))), built from the size so it traces with a dynamic size."""
    pos = torch.arange(size, device=like.device).to(torch.float32)
    i = torch.arange(bins, device=like.device).to(torch.float32)[:, None]
    lo = torch.floor(i * size / bins)
    hi = torch.ceil((i + 1) * size / bins)
    inside = ((pos[None] >= lo) & (pos[None] < hi)).to(torch.float32)
    return (inside / inside.sum(1, keepdim=True)).to(like.dtype)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: average pooling to b×b (b in PPM_BINS), 1×1 conv, upsampled back and
    concatenated with the input, then a 3×3 conv. The pooling is written as two averaging matrices (equal to
    ``adaptive_avg_pool2d``), which ONNX has no operator for at a dynamic size."""

    def __init__(self, cin: int, cout: int, branch: int):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv2d(cin, branch, 1) for _ in PPM_BINS)
        self.fuse = nn.Sequential(nn.Conv2d(cin + branch * len(PPM_BINS), cout, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        out = [x]
        for bins, conv in zip(PPM_BINS, self.branches):
            pooled = torch.einsum("ih,nchw,jw->ncij", adaptive_pool_matrix(h, bins, x), x, adaptive_pool_matrix(w, bins, x))
            out.append(F.interpolate(F.relu(conv(pooled)), size=(h, w), mode="bilinear", align_corners=False))
        return self.fuse(torch.cat(out, 1))


def _set_bias(conv: nn.Conv2d, value: float = 0.0) -> None:
    assert conv.bias is not None
    nn.init.constant_(conv.bias, value)


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm, 32 groups where the width allows, never one channel a group (P7 may be 1×1)."""
    return nn.GroupNorm(max(1, math.gcd(32, channels // 2)), channels)


class DeformBlock(nn.Module):
    """DCNv2 3×3: offsets (dy, dx per kernel point) and a sigmoid modulation mask from a 3×3 conv
    (zero-initialised: it starts as a plain convolution at half gain), then GroupNorm and ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.offset = nn.Conv2d(cin, 27, 3, padding=1)
        nn.init.zeros_(self.offset.weight)
        _set_bias(self.offset)
        self.weight = nn.Parameter(torch.empty(cout, cin, 3, 3))
        nn.init.kaiming_uniform_(self.weight, a=1)
        self.norm = _norm(cout)

    def forward(self, x: Tensor) -> Tensor:
        o = self.offset(x)
        y = ops.deform_conv2d(x, o[:, :18], self.weight, None, 1, 1, 1, torch.sigmoid(o[:, 18:]))
        return F.relu(self.norm(y))


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class BoxHead(nn.Module):
    """Shared over P3–P7: class logits (one per thing class) from one tower, [l, t, r, b] (pixels) and the
    border-ness logit from the other."""

    def __init__(self, channels: int, num_things: int, convs: int):
        super().__init__()

        def tower():
            layers: list[nn.Module] = []
            for _ in range(convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), _norm(channels), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls = nn.Conv2d(channels, num_things, 3, padding=1)
        self.ltrb = nn.Conv2d(channels, 4, 3, padding=1)
        self.border = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in BOX_STRIDES)
        for conv in (self.cls, self.ltrb, self.border):
            nn.init.normal_(conv.weight, std=0.01)
            _set_bias(conv)
        _set_bias(self.cls, -math.log(99.0))  # prior probability 0.01 (focal loss)

    def forward(self, levels: list[Tensor]) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per level: class logits N×C×H×W, distances N×4×H×W (input pixels), border-ness logits N×1×H×W."""
        out = []
        for feat, stride, scale in zip(levels, BOX_STRIDES, self.scales):
            c, b = self.cls_tower(feat), self.box_tower(feat)
            dist = torch.exp(scale(self.ltrb(b)).clamp(max=10.0)) * stride
            out.append((self.cls(c), dist, self.border(b)))
        return out


class SemanticHead(nn.Module):
    def __init__(self, channels: int, width: int, num_classes: int):
        super().__init__()
        self.blocks = nn.ModuleList(DeformBlock(channels, width) for _ in range(4))
        self.classifier = nn.Conv2d(4 * width, num_classes, 1)

    def forward(self, levels: list[Tensor], image: Tensor) -> Tensor:
        size = levels[0].shape[-2:]
        feats = [self.blocks[0](levels[0])]
        for block, feat in zip(self.blocks[1:], levels[1:4]):
            feats.append(F.interpolate(block(feat), size=size, mode="bilinear", align_corners=False))
        logits = self.classifier(torch.cat(feats, 1))
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)


def locations(feat: Tensor, stride: int) -> Tensor:
    """(H·W)×2 (x, y) of a level's locations in input pixels: the centre of pixel (j·s + s/2, i·s + s/2)."""
    h, w = feat.shape[-2:]
    xs = (torch.arange(w, device=feat.device) * stride + stride // 2).to(torch.float32) + 0.5
    ys = (torch.arange(h, device=feat.device) * stride + stride // 2).to(torch.float32) + 0.5
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


def assign_locations(points: Tensor, ranges: Tensor, boxes: Tensor, masks: Tensor,
                     predicted_borderness: Tensor | None = None) -> Tensor:
    """The ground-truth thing each location learns from (index into ``boxes``), −1 for background.

    ``points`` L×2 (x, y) pixel centres, ``ranges`` L×2 the (low, high] of max(l, t, r, b) the location's level
    takes, ``boxes`` K×4, ``masks`` K×H×W. A location is a candidate for a thing when its pixel is inside the
    thing's mask and the thing's size fits its level; among several candidates it goes to the one whose
    border-ness target is closest to ``predicted_borderness`` (L; without it, 1: the most central one)."""
    n_points = points.shape[0]
    if boxes.shape[0] == 0:
        return torch.full((n_points,), -1, dtype=torch.int64, device=points.device)
    x, y = points[:, 0:1], points[:, 1:2]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], -1)  # L×K×4
    h, w = masks.shape[-2:]
    ix, iy = points[:, 0].floor().long(), points[:, 1].floor().long()
    on_image = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    in_mask = masks[:, iy.clamp(0, h - 1), ix.clamp(0, w - 1)].bool().t() & on_image[:, None]  # L×K
    reach = ltrb.amax(-1)
    fits = (reach > ranges[:, 0:1]) & (reach <= ranges[:, 1:2])
    candidate = in_mask & fits & (ltrb.amin(-1) > 0)
    target = borderness(ltrb)
    pred = points.new_ones(n_points) if predicted_borderness is None else predicted_borderness.detach()
    cost = (target - pred[:, None]).abs().masked_fill(~candidate, float("inf"))
    best = cost.argmin(1)
    return torch.where(candidate.any(1), best, torch.full_like(best, -1))


BACKBONES = ("resnet18", "resnet50", "internimage_t", "internimage_cpu")


def backbone_body(backbone: str, in_channels: int, drop_path: float | None = None) -> tuple[nn.Module, list[int]]:
    """The body giving C2–C5 (strides 4..32; a dict of them for ResNet, a list for InternImage) and their widths.
    ``drop_path``: InternImage's stochastic depth rate (default: its configuration's)."""
    if backbone.startswith("internimage_"):
        body = internimage(backbone.removeprefix("internimage_"), in_channels, 32, drop_path)
        return body, list(body.out_channels)
    if drop_path is not None:
        raise ValueError(f"drop_path is for InternImage backbones, not {backbone}")
    resnet = getattr(torchvision.models, backbone)(weights=None)
    if in_channels != 3:
        resnet.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    body = IntermediateLayerGetter(resnet, {"layer1": "c2", "layer2": "c3", "layer3": "c4", "layer4": "c5"})
    return body, [resnet.layer1[-1].conv1.in_channels * (2 ** i) for i in range(4)]  # 64.. (basic) or 256.. (bottleneck)


class LPSNet(nn.Module):
    task = "panoptic"
    # C5 is 1/32 and P6/P7 come from stride-2 convolutions, which take any size; 64 because an export traced
    # where P7 is 1×1 (input <= 128) fixes that size in the graph, and the default export sample is 4 × this.
    size_divisor = 64

    def __init__(self, backbone: str, num_classes: int, in_channels: int, thing_classes: list[int],
                 max_detections: int = 100, fpn_channels: int = 256, head_convs: int = 4, semantic_channels: int = 128,
                 object_size: int = 64, candidates_per_level: int = 1000, score_threshold: float = 0.05,
                 nms_threshold: float = 0.6, paste_score_threshold: float = 0.3, overlap_threshold: float = 0.5,
                 min_stuff_area: int = 64, semantic_loss_weight: float = 1.0, drop_path: float | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone}")
        thing_first_order(num_classes, thing_classes)  # a non-empty proper subset of the classes, or ValueError
        self.thing_classes = sorted(set(int(c) for c in thing_classes))
        self.num_classes = num_classes
        self.max_detections = max_detections
        self.object_size = object_size
        self.candidates_per_level = candidates_per_level
        self.score_threshold, self.nms_threshold = score_threshold, nms_threshold
        self.paste_score_threshold, self.overlap_threshold = paste_score_threshold, overlap_threshold
        self.min_stuff_area, self.semantic_loss_weight = min_stuff_area, semantic_loss_weight

        self.body, widths = backbone_body(backbone, in_channels, drop_path)
        self.ppm = PyramidPooling(widths[3], fpn_channels, max(1, fpn_channels // 4))
        self.fpn = FeaturePyramidNetwork(widths[:3] + [fpn_channels], fpn_channels,
                                         extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))
        self.box_head = BoxHead(fpn_channels, len(self.thing_classes), head_convs)
        self.semantic_head = SemanticHead(fpn_channels, semantic_channels, num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        """P2..P7."""
        feats = self.body(x)
        c2, c3, c4, c5 = feats.values() if isinstance(feats, dict) else feats
        return list(self.fpn({"c2": c2, "c3": c3, "c4": c4, "c5": self.ppm(c5)}).values())

    def forward(self, x: Tensor, targets: list[dict] | None = None) -> dict[str, Tensor]:
        """The panoptic outputs; in training with ``targets`` (per image ``boxes`` K×4, ``labels`` K,
        ``masks`` K×H×W, ``semantic`` H×W) the losses instead."""
        levels = self.features(x)
        semantic = self.semantic_head(levels, x)
        heads = self.box_head(levels[1:])
        if self.training and targets is not None:
            return self.losses(heads, semantic, targets, levels[1:])
        return self.panoptic(heads, semantic, x)

    # --- training -----------------------------------------------------------------------------------

    def level_ranges(self) -> list[tuple[float, float]]:
        s = float(self.object_size)
        bounds = [0.0, s, 2 * s, 4 * s, 8 * s, float("inf")]
        return list(zip(bounds[:-1], bounds[1:]))

    def losses(self, heads, semantic: Tensor, targets: list[dict], levels: list[Tensor]) -> dict[str, Tensor]:
        pts = [locations(f, s) for f, s in zip(levels, BOX_STRIDES)]
        points = torch.cat(pts)
        ranges = torch.cat([points.new_tensor(r).expand(p.shape[0], 2) for p, r in zip(pts, self.level_ranges())])
        flat = lambda t: t.flatten(2).transpose(1, 2)  # noqa: E731  N×C×H×W -> N×HW×C
        cls = torch.cat([flat(c) for c, _, _ in heads], 1)           # N×L×C
        dist = torch.cat([flat(d) for _, d, _ in heads], 1)          # N×L×4
        border = torch.cat([flat(b) for _, _, b in heads], 1)[..., 0]  # N×L
        to_thing = {c: i for i, c in enumerate(self.thing_classes)}
        cls_target = torch.zeros_like(cls)
        pos_pred, pos_box, pos_points, pos_border_logit = [], [], [], []
        for i, t in enumerate(targets):
            boxes, labels, masks = t["boxes"].to(points), t["labels"], t["masks"]
            keep = torch.tensor([int(c) in to_thing for c in labels.tolist()], dtype=torch.bool, device=labels.device)
            boxes, labels, masks = boxes[keep], labels[keep], masks[keep]
            match = assign_locations(points, ranges, boxes, masks, torch.sigmoid(border[i]))
            pos = match >= 0
            if pos.any():
                col = torch.tensor([to_thing[int(c)] for c in labels[match[pos]].tolist()], device=cls.device)
                cls_target[i, pos.nonzero()[:, 0], col] = 1.0
                pos_pred.append(dist[i, pos])
                pos_box.append(boxes[match[pos]])
                pos_points.append(points[pos])
                pos_border_logit.append(border[i, pos])
        num_pos = max(sum(p.shape[0] for p in pos_pred), 1)
        loss_cls = sigmoid_focal_loss(cls, cls_target, alpha=0.25, gamma=2.0, reduction="sum") / num_pos
        if pos_pred:
            d, gt, p, logit = (torch.cat(v) for v in (pos_pred, pos_box, pos_points, pos_border_logit))
            pred_boxes = torch.cat([p - d[:, :2], p + d[:, 2:]], 1)
            loss_box = generalized_box_iou_loss(pred_boxes, gt, reduction="sum") / num_pos
            gt_ltrb = torch.cat([p - gt[:, :2], gt[:, 2:] - p], 1)
            loss_border = F.binary_cross_entropy_with_logits(logit, borderness(gt_ltrb), reduction="sum") / num_pos
        else:  # no thing in the batch: zero losses that still reach the heads' parameters
            loss_box = dist.sum() * 0.0
            loss_border = border.sum() * 0.0
        sem_target = torch.stack([t["semantic"] for t in targets]).to(semantic.device).long()
        loss_sem = F.cross_entropy(semantic, sem_target, ignore_index=IGNORE_INDEX)
        if not torch.isfinite(loss_sem):  # every pixel ignored
            loss_sem = semantic.sum() * 0.0
        return {"loss_cls": loss_cls, "loss_box": loss_box, "loss_borderness": loss_border,
                "loss_semantic": self.semantic_loss_weight * loss_sem}

    # --- inference, fixed size ----------------------------------------------------------------------

    def detect(self, heads, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """N×D boxes, scores, labels (data-set class indices), found; empty slots zero."""
        n = x.shape[0]
        image = (x.shape[-2], x.shape[-1])
        c = len(self.thing_classes)
        classes = torch.tensor(self.thing_classes, dtype=torch.int64, device=x.device)
        all_boxes, all_scores, all_labels = [], [], []
        for (logits, dist, border), stride in zip(heads, BOX_STRIDES):
            pts = locations(logits, stride)                                        # HW×2
            prob = torch.sigmoid(logits).flatten(2).transpose(1, 2)               # N×HW×C
            score = prob * torch.sigmoid(border).flatten(2).transpose(1, 2)       # class score × border-ness
            score = score.masked_fill(prob <= self.score_threshold, _INVALID).reshape(n, -1)
            d = dist.flatten(2).transpose(1, 2)                                   # N×HW×4
            boxes = torch.cat([pts[None] - d[..., :2], pts[None] + d[..., 2:]], -1)
            boxes = boxes[:, :, None].expand(-1, -1, c, -1).reshape(n, -1, 4)
            labels = classes.view(1, 1, c).expand(n, pts.shape[0], c).reshape(n, -1)
            top, boxes, labels = _topk(score, self.candidates_per_level, boxes, labels)
            all_boxes.append(box_ops.clip_boxes_to_image(boxes, image))
            all_scores.append(top)
            all_labels.append(labels)
        boxes, scores, labels = torch.cat(all_boxes, 1), torch.cat(all_scores, 1), torch.cat(all_labels, 1)
        ok = (scores > _INVALID) & ((boxes[..., 2] - boxes[..., 0]) > 0) & ((boxes[..., 3] - boxes[..., 1]) > 0)
        best, det_boxes, det_labels, found = select_detections(boxes, scores, labels, ok, self.nms_threshold,
                                                               self.max_detections)
        det_labels = torch.where(found, det_labels, torch.full_like(det_labels, self.thing_classes[0]))
        return det_boxes, torch.where(found, best, torch.zeros_like(best)), det_labels, found

    def instance_masks(self, boxes: Tensor, labels: Tensor, found: Tensor, semantic: Tensor) -> Tensor:
        """N×D×H×W {0, 1}: the pixels inside each box (pixel centre within it) whose semantic argmax is its class
        (what the merge's "box_class" rule reads inside each box; for inspection, not in the forward)."""
        arg = semantic.argmax(1)
        return torch.stack([ops.paste.box_class_masks(a, torch.where(f[:, None], b, torch.zeros_like(b)), l)
                            for a, b, l, f in zip(arg, boxes, labels, found)]).to(semantic.dtype)

    def panoptic(self, heads, semantic: Tensor, x: Tensor) -> dict[str, Tensor]:
        boxes, scores, labels, found = self.detect(heads, x)
        # An empty slot gets the empty box (0, 0, 0, 0): no pixel centre lies in it, as its mask was empty.
        boxes = torch.where(found[..., None], boxes, torch.zeros_like(boxes))
        return panoptic_merge(semantic, None, scores, labels, self.thing_classes, self.overlap_threshold,
                              self.min_stuff_area, self.paste_score_threshold, boxes=boxes, mask_rule="box_class")


def build_lpsnet(backbone: str | int, num_classes: int, in_channels: int, thing_classes: list[int] | None = None,
                 **kwargs) -> LPSNet:
    """LPSNet on ``backbone`` (``BACKBONES``; an int: ResNet of that depth), random weights (none are had
    offline). ``thing_classes``: the data set's thing class indices (default: every class but 0, which is stuff)."""
    if num_classes < 2:
        raise ModelError(f"LPSNet needs at least 2 classes (one stuff, one thing), got {num_classes}",
                         "train it on a data set with stuff and thing classes")
    things = list(range(1, num_classes)) if thing_classes is None else list(thing_classes)
    try:
        return LPSNet(f"resnet{backbone}" if isinstance(backbone, int) else backbone, num_classes, in_channels, things,
                      **kwargs)
    except ValueError as e:
        fix = ("drop drop_path, or pick an lpsnet_internimage_* model" if "drop_path" in str(e)
               else "give thing_classes as a non-empty proper subset of the class indices")
        raise ModelError(f"LPSNet: {e}", fix) from None


@register("lpsnet_resnet18", task="panoptic", backbone="resnet18")
@register("lpsnet_resnet50", task="panoptic", backbone="resnet50")
@register("lpsnet_internimage_t", task="panoptic", backbone="internimage_t")
@register("lpsnet_internimage_cpu", task="panoptic", backbone="internimage_cpu")
def _lpsnet(backbone: str, num_classes: int, in_channels: int, thing_classes: list[int] | None = None,
            max_detections: int = 100, fpn_channels: int = 256, head_convs: int = 4, semantic_channels: int = 128,
            object_size: int = 64, candidates_per_level: int = 1000, score_threshold: float = 0.05,
            nms_threshold: float = 0.6, paste_score_threshold: float = 0.3, overlap_threshold: float = 0.5,
            min_stuff_area: int = 64, semantic_loss_weight: float = 1.0, drop_path: float | None = None) -> LPSNet:
    """``drop_path``: the InternImage backbones' stochastic depth rate (default: the configuration's)."""
    return build_lpsnet(backbone, num_classes, in_channels, thing_classes, max_detections=max_detections,
                        fpn_channels=fpn_channels, head_convs=head_convs, semantic_channels=semantic_channels,
                        object_size=object_size, candidates_per_level=candidates_per_level,
                        score_threshold=score_threshold, nms_threshold=nms_threshold,
                        paste_score_threshold=paste_score_threshold, overlap_threshold=overlap_threshold,
                        min_stuff_area=min_stuff_area, semantic_loss_weight=semantic_loss_weight, drop_path=drop_path)


__all__ = ["BACKBONES", "LPSNet", "adaptive_pool_matrix", "backbone_body", "assign_locations", "borderness", "build_lpsnet", "locations"]
