"""Mask R-CNN (He et al.) with its whole inference in the graph and a fixed-size answer.

The network is torchvision's (ResNet + FPN P2–P6, RPN with 3 anchors per location, multi-level RoIAlign
7×7 box head and 14×14 mask head, class-specific 28×28 masks), so torchvision's anchors, box coder,
matchers and losses train it and torchvision's own Mask R-CNN models can be wrapped as they are
(``MaskRCNN.from_torchvision``). Inference is edgeseg's: every step torchvision does per image with
data-dependent sizes (top-k per level, NMS, score filtering, mask pasting) is done on fixed-size tensors,
so it exports to one ONNX graph with dynamic batch and H×W:

- candidates that torchvision would drop (small boxes, low scores, padding) stay in place with score −1;
- NMS is ``edgeseg.ops.nms_keep`` (a keep mask, ONNX NonMaxSuppression when exported);
- each top-k is taken over the candidates plus a block of dummies, so k never depends on the input size.

Output (eager and exported, batched): ``boxes`` N×D×4 (input pixels), ``scores`` N×D, ``labels`` N×D
(int64, 1..num_classes−1; 0 is background), ``masks`` N×D×H×W (probabilities, pasted as torchvision's
``paste_masks_in_image``), ``num_detections`` N (int64); slots past ``num_detections`` are zero.
D = ``max_detections``. Detections come in decreasing score, as torchvision's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import boxes as box_ops

from edgeseg import ops
from edgeseg.models.registry import register
from edgeseg.ops.nms import nms_keep

INSTANCE_OUTPUTS = ("boxes", "scores", "labels", "masks", "num_detections")
_INVALID = -1.0  # the score of a candidate torchvision would have dropped (real scores are probabilities)


def _topk(scores: Tensor, k: int, *tensors: Tensor, fill: float = _INVALID) -> tuple[Tensor, ...]:
    """The k best of N×K ``scores`` (K may be below k: the rest are dummies scored ``fill``, below every
    real score, with zeros in ``tensors``), and ``tensors`` (N×K×…) gathered alike. k is fixed, whatever K
    the input size gives."""
    n = scores.shape[0]
    scores = torch.cat([scores, scores.new_full((n, k), fill)], 1)
    best, idx = scores.topk(k, dim=1)
    out = [best]
    for t in tensors:
        padded = torch.cat([t, t.new_zeros((n, k) + t.shape[2:])], 1)
        out.append(padded.gather(1, idx.view(n, k, *([1] * (t.dim() - 2))).expand(n, k, *t.shape[2:])))
    return tuple(out)


def select_detections(boxes: Tensor, scores: Tensor, labels: Tensor, ok: Tensor, nms_threshold: float,
                      max_detections: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The fixed-size detection step of every detector here: candidates not ``ok`` scored invalid, class-wise
    NMS, the best ``max_detections``. Returns (scores, boxes, labels, found); boxes past ``found`` are zero."""
    scores = scores.masked_fill(~ok, _INVALID)
    keep = nms_keep(boxes, scores, nms_threshold, groups=labels) > 0
    scores = scores.masked_fill(~keep, _INVALID)
    best, det_boxes, det_labels = _topk(scores, max_detections, boxes, labels)
    found = best > _INVALID
    return best, det_boxes * found[..., None], det_labels, found


def _valid_size(boxes: Tensor, min_size: float) -> Tensor:
    return ((boxes[..., 2] - boxes[..., 0]) >= min_size) & ((boxes[..., 3] - boxes[..., 1]) >= min_size)


def _rois(boxes: Tensor) -> Tensor:
    """N×K×4 -> (N·K)×5 with each box's image index first (RoIAlign's form)."""
    n, k = boxes.shape[:2]
    index = torch.arange(n, dtype=boxes.dtype, device=boxes.device)[:, None, None].expand(n, k, 1)
    return torch.cat([index, boxes], 2).reshape(n * k, 5)


def pad_to_stride(x: Tensor, stride: int) -> Tensor:
    """Zeros after the normalised image (bottom, right) up to multiples of ``stride``: torchvision's
    ``batch_images``. Done in the model so the image's own size reaches the graph: boxes are clipped to it
    and masks pasted at it, as torchvision does, whatever size the input has."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % stride, 0, (-h) % stride))


class MaskRCNN(nn.Module):
    task = "instance"
    # Inputs of any size: the model pads itself (``pad_to_stride``, zeros to the FPN's 1/32), so the runtimes do not
    size_divisor = 1
    stride = 32

    def __init__(self, net: TorchvisionMaskRCNN):
        super().__init__()
        self.net = net
        self.max_detections = net.roi_heads.detections_per_img

    @classmethod
    def from_torchvision(cls, net: TorchvisionMaskRCNN, name: str = "torchvision_maskrcnn") -> "MaskRCNN":
        """Any torchvision Mask R-CNN (``maskrcnn_resnet50_fpn``, ``_v2``, or one built by hand), as it is.
        Its transform's resize is not used (inputs come at the size to detect at); its normalisation becomes
        the metadata's mean/std, so every edgeseg backend applies it."""
        model = cls(net)
        num_classes = net.roi_heads.box_predictor.cls_score.out_features
        model.edgeseg_config = {"name": name, "num_classes": num_classes,
                                "in_channels": len(net.transform.image_mean)}
        model.normalization = ([float(v) for v in net.transform.image_mean], [float(v) for v in net.transform.image_std])
        model.class_names = _coco_names(num_classes)
        return model

    def forward(self, x: Tensor, targets: list[dict] | None = None) -> dict[str, Tensor]:
        """Detections (the fixed-size contract); in training with ``targets`` (per image: ``boxes`` K×4,
        ``labels`` K int64, ``masks`` K×H×W uint8), torchvision's RPN and RoI-head losses instead."""
        if self.training and targets is not None:
            return self.losses(x, targets)
        return self.detect(x)

    def losses(self, x: Tensor, targets: list[dict], features: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """``features``: the backbone's, where a subclass has computed them already."""
        images = ImageList(pad_to_stride(x, self.stride), [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0])
        features = self.net.backbone(images.tensors) if features is None else features
        proposals, rpn_losses = self.net.rpn(images, features, targets)
        _, head_losses = self.net.roi_heads(features, proposals, images.image_sizes, targets)
        return {**rpn_losses, **head_losses}

    # --- inference, fixed size ---------------------------------------------------------------------

    def _anchors(self, levels: list[Tensor], image: tuple) -> list[Tensor]:
        """Per level (H_l·W_l·A)×4 anchors, torchvision's AnchorGenerator arithmetic (stride = padded image // grid)."""
        out = []
        for feat, base in zip(levels, self.net.rpn.anchor_generator.cell_anchors):
            gh, gw = feat.shape[-2:]
            sy, sx = image[0] // gh, image[1] // gw
            ys = torch.arange(0, gh, dtype=torch.int32, device=feat.device) * sy
            xs = torch.arange(0, gw, dtype=torch.int32, device=feat.device) * sx
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack((xx.reshape(-1), yy.reshape(-1), xx.reshape(-1), yy.reshape(-1)), dim=1)
            out.append((shifts.view(-1, 1, 4) + base.to(feat.device).view(1, -1, 4)).reshape(-1, 4))
        return out

    def _proposals(self, features: dict[str, Tensor], image: tuple, padded: tuple) -> tuple[Tensor, Tensor]:
        """N×P proposals (boxes, validity) as torchvision's RPN in eval, P = its post-NMS top n; anchors from the
        ``padded`` input's size, boxes clipped to the ``image``'s, as torchvision's."""
        rpn = self.net.rpn
        levels = list(features.values())
        objectness, deltas = rpn.head(levels)
        n = levels[0].shape[0]
        boxes, scores, level_ids = [], [], []
        for lvl, (obj, dlt, anchors) in enumerate(zip(objectness, deltas, self._anchors(levels, padded))):
            a = obj.shape[1]
            h, w = obj.shape[-2:]
            obj = obj.view(n, a, 1, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1)           # torchvision's order
            dlt = dlt.view(n, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4)
            top, box_deltas, anchor = _topk(obj, rpn._pre_nms_top_n["testing"], dlt,
                                            anchors[None].expand(n, -1, -1), fill=float("-inf"))  # logits
            decoded = rpn.box_coder.decode_single(box_deltas.reshape(-1, 4), anchor.reshape(-1, 4)).view(n, -1, 4)
            decoded = box_ops.clip_boxes_to_image(decoded, image)
            prob = torch.sigmoid(top)
            ok = torch.isfinite(top) & _valid_size(decoded, rpn.min_size) & (prob >= rpn.score_thresh)
            boxes.append(decoded)
            scores.append(prob.masked_fill(~ok, _INVALID))
            level_ids.append(torch.full_like(top, lvl, dtype=torch.int64))
        boxes, scores, level_ids = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(level_ids, 1)
        keep = nms_keep(boxes, scores, rpn.nms_thresh, groups=level_ids) > 0
        scores = scores.masked_fill(~keep, _INVALID)  # dropped candidates are _INVALID already
        best, proposals = _topk(scores, rpn._post_nms_top_n["testing"], boxes)
        return proposals, best > _INVALID

    def detect(self, x: Tensor, features: dict[str, Tensor] | None = None, mask_probs: bool = False) -> dict[str, Tensor]:
        """The fixed-size contract; ``mask_probs`` adds the mask head's N×D×28×28 probabilities of each detection's
        class (what the deploy graph returns instead of full-size masks; empty slots zero)."""
        n = x.shape[0]
        image = (x.shape[-2], x.shape[-1])
        padded = pad_to_stride(x, self.stride)
        features = self.net.backbone(padded) if features is None else features
        proposals, proposal_ok = self._proposals(features, image, (padded.shape[-2], padded.shape[-1]))
        heads = self.net.roi_heads
        fpn = [features[k] for k in list(features)[:4]]  # P2–P5: the levels RoIAlign pools from
        scales = [0.25, 0.125, 0.0625, 0.03125]
        p = proposals.shape[1]
        pooled = ops.multilevel_roi_align(fpn, _rois(proposals), 7, scales, sampling_ratio=2)
        logits, regression = heads.box_predictor(heads.box_head(pooled))
        c = logits.shape[-1]
        boxes = heads.box_coder.decode_single(regression, proposals.reshape(-1, 4)).view(n, p, c, 4)
        boxes = box_ops.clip_boxes_to_image(boxes, image)[:, :, 1:]                  # background dropped
        scores = torch.softmax(logits, -1).view(n, p, c)[:, :, 1:]
        labels = torch.arange(1, c, device=x.device).view(1, 1, -1).expand(n, p, c - 1)
        boxes, scores, labels = boxes.reshape(n, -1, 4), scores.reshape(n, -1), labels.reshape(n, -1)
        ok = (proposal_ok[:, :, None].expand(n, p, c - 1).reshape(n, -1) & (scores > heads.score_thresh)
              & _valid_size(boxes, 1e-2))
        best, det_boxes, det_labels, found = select_detections(boxes, scores, labels, ok, heads.nms_thresh,
                                                               self.max_detections)
        det_labels = det_labels * found
        d = self.max_detections
        mask_logits = heads.mask_predictor(heads.mask_head(
            ops.multilevel_roi_align(fpn, _rois(det_boxes), 14, scales, sampling_ratio=2)))   # (N·D)×C×28×28
        picked = mask_logits.gather(1, det_labels.reshape(-1, 1, 1, 1).expand(-1, 1, *mask_logits.shape[-2:]))
        probs = torch.sigmoid(picked[:, 0])
        masks = ops.paste_masks(probs, det_boxes.reshape(-1, 4), x, threshold=-1)
        masks = masks.view(n, d, *image) * found[..., None, None].to(masks.dtype)
        out = {"boxes": det_boxes, "scores": torch.where(found, best, torch.zeros_like(best)), "labels": det_labels,
               "masks": masks, "num_detections": found.sum(1)}
        if mask_probs:
            out["mask_probs"] = probs.view(n, d, *probs.shape[-2:]) * found[..., None, None].to(probs.dtype)
        return out


def _coco_names(num_classes: int) -> list[str] | None:
    """torchvision's COCO category names (91, background and "N/A" gaps included) where the count fits."""
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    names = MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
    return list(names) if num_classes == len(names) else None


def torchvision_pipeline(net: TorchvisionMaskRCNN, x: Tensor) -> list[dict[str, Tensor]]:
    """torchvision's own per-image eval path minus its resize/normalise transform (zero padding to 32, RPN, RoI
    heads, mask pasting): the reference edgeseg's fixed-size inference is held against, in tests and benchmarks."""
    sizes = [(int(x.shape[-2]), int(x.shape[-1]))] * x.shape[0]
    padded = net.transform.batch_images(list(x), size_divisible=32)
    features = net.backbone(padded)
    proposals, _ = net.rpn(ImageList(padded, sizes), features)
    dets, _ = net.roi_heads(features, proposals, sizes)
    return net.transform.postprocess(dets, sizes, sizes)


def wrap_torchvision(model: nn.Module) -> nn.Module:
    """A torchvision Mask R-CNN becomes edgeseg's (the instance contract); any other model is returned as it is."""
    return MaskRCNN.from_torchvision(model) if isinstance(model, TorchvisionMaskRCNN) else model


# torchvision builder settings a state dict does not hold, which ``--model-arg`` may set at export
TORCHVISION_ARGS = {"box_score_thresh": float, "box_nms_thresh": float, "box_detections_per_img": int,
                    "rpn_pre_nms_top_n_test": int, "rpn_post_nms_top_n_test": int}


def load_torchvision_checkpoint(path, state: dict, **settings) -> MaskRCNN:
    """A torchvision ``maskrcnn_resnet50_fpn`` or ``_v2`` from its state dict (bare, or under "model" as
    torchvision's reference scripts save it); the variant and class count are read from the weights.
    ``settings``: builder arguments of ``TORCHVISION_ARGS`` (score threshold, detections per image...)."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

    from edgeseg.errors import ModelError

    state = state.get("model", state)
    key = "roi_heads.box_predictor.cls_score.weight"
    if not isinstance(state, dict) or not isinstance(state.get(key), Tensor) or state[key].dim() != 2:
        raise ModelError(f"{path} is not an edgeseg checkpoint (no format tag) nor a torchvision Mask R-CNN state dict",
                         "pass a .pt written by 'edgeseg train', or torch.save(model.state_dict()) of a torchvision Mask R-CNN")
    v2 = "roi_heads.box_head.0.0.weight" in state
    builder = maskrcnn_resnet50_fpn_v2 if v2 else maskrcnn_resnet50_fpn
    num_classes = int(state[key].shape[0])
    if not 2 <= num_classes <= 1024:
        raise ModelError(f"{path}: the box predictor has {num_classes} classes", "a Mask R-CNN has 2..1024 classes (background included)")
    for k, v in settings.items():
        kind = TORCHVISION_ARGS.get(k)
        if kind is None or isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and not isinstance(v, int)) \
                or not (0 <= v <= 1 if kind is float else 1 <= v <= 10_000):
            raise ModelError(f"{path}: model argument {k}={v!r} is not a torchvision Mask R-CNN setting in range",
                             f"use {', '.join(TORCHVISION_ARGS)} (thresholds in 0..1, counts in 1..10000)")
    net = builder(weights=None, weights_backbone=None, num_classes=num_classes, **settings)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ModelError(f"{path}: the weights do not fit torchvision's {builder.__name__} ({str(e).splitlines()[0][:160]})",
                         "only maskrcnn_resnet50_fpn and maskrcnn_resnet50_fpn_v2 state dicts are recognised; "
                         "for another backbone wrap the model yourself: edgeseg.export_onnx(model, ...)") from None
    return MaskRCNN.from_torchvision(net.eval(), name=builder.__name__)


def build_maskrcnn(depth: int, num_classes: int, in_channels: int, max_detections: int = 100,
                   proposals: int = 1000, anchor_size: int = 32, train_proposals: int = 2000,
                   rpn_batch_size_per_image: int = 256, box_batch_size_per_image: int = 512,
                   mask_channels: int = 256, representation_size: int = 1024) -> MaskRCNN:
    """ResNet-``depth`` FPN Mask R-CNN, random weights, trainable batch norm (no pretrained weights offline).
    ``num_classes`` counts the background (torchvision's convention). ``proposals``: RPN top-n before and
    after NMS at inference (1000 in the paper's setting); ``max_detections``: D.

    Training-cost and object-size settings (the defaults are the paper's, as torchvision's): ``anchor_size``
    the P2 anchor side, doubling per level (32..512; 8 suits ~10–25 px nuclei); ``train_proposals`` RPN top-n
    before and after NMS in training; ``rpn_batch_size_per_image`` anchors and ``box_batch_size_per_image``
    RoIs sampled per image for the losses (a quarter positive: the mask head's batch); ``mask_channels`` the
    width of the mask head's four 3×3 convolutions and its deconvolution; ``representation_size`` the width
    of the box head's two fully connected layers."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    backbone = resnet_fpn_backbone(backbone_name=f"resnet{depth}", weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5)
    if in_channels != 3:
        backbone.body.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    anchors = AnchorGenerator(tuple((anchor_size * 2**i,) for i in range(5)), ((0.5, 1.0, 2.0),) * 5)
    mask_head = MaskRCNNHeads(backbone.out_channels, [mask_channels] * 4, 1)
    net = TorchvisionMaskRCNN(backbone, num_classes=num_classes, box_detections_per_img=max_detections,
                              rpn_pre_nms_top_n_test=proposals, rpn_post_nms_top_n_test=proposals,
                              rpn_pre_nms_top_n_train=train_proposals, rpn_post_nms_top_n_train=train_proposals,
                              rpn_batch_size_per_image=rpn_batch_size_per_image,
                              box_batch_size_per_image=box_batch_size_per_image, rpn_anchor_generator=anchors,
                              mask_head=mask_head, image_mean=[0.0] * in_channels, image_std=[1.0] * in_channels)
    if mask_channels != 256:  # torchvision's predictor takes 256 channels
        net.roi_heads.mask_predictor = MaskRCNNPredictor(mask_channels, mask_channels, num_classes)
    if representation_size != 1024:  # torchvision's box head and predictor are 1024 wide
        net.roi_heads.box_head = TwoMLPHead(backbone.out_channels * 7 * 7, representation_size)
        net.roi_heads.box_predictor = FastRCNNPredictor(representation_size, num_classes)
    return MaskRCNN(net)


@register("maskrcnn_resnet18_fpn", task="instance", depth=18)
@register("maskrcnn_resnet50_fpn", task="instance", depth=50)
def _maskrcnn(depth: int, num_classes: int, in_channels: int, max_detections: int = 100, proposals: int = 1000,
              anchor_size: int = 32, train_proposals: int = 2000, rpn_batch_size_per_image: int = 256,
              box_batch_size_per_image: int = 512, mask_channels: int = 256, representation_size: int = 1024):
    return build_maskrcnn(depth, num_classes, in_channels, max_detections, proposals, anchor_size, train_proposals,
                          rpn_batch_size_per_image, box_batch_size_per_image, mask_channels, representation_size)


__all__ = ["INSTANCE_OUTPUTS", "MaskRCNN", "build_maskrcnn", "load_torchvision_checkpoint", "torchvision_pipeline",
           "wrap_torchvision"]
