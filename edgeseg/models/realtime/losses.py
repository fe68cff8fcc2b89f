"""The real-time papers' training losses: OHEM cross-entropy, boundary targets and losses (PIDNet), Laplacian
detail targets and losses (STDC). Every model of ``edgeseg.models.realtime`` returns its auxiliary outputs in
training mode only and names its loss terms in ``model.losses(outputs, target)``, which ``edgeseg train`` sums."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = 255


def ohem_cross_entropy(logits: Tensor, target: Tensor, thresh: float = 0.7, min_kept_fraction: float = 1 / 16) -> Tensor:
    """Online hard example mining (as BiSeNetV2 §4.2, DDRNet §4.2, PIDNet §4.1 and PP-LiteSeg §4.1 train): the mean
    cross-entropy of the pixels whose probability of their true class is below ``thresh``, and of at least the
    hardest ``min_kept_fraction`` of the valid pixels (the papers' fixed min_kept is for 1024² crops; a fraction
    scales with the crop). ``logits`` are upsampled to the target's size first."""
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    pixel = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX, reduction="none").flatten()
    valid = target.flatten() != IGNORE_INDEX
    pixel = pixel[valid]
    if pixel.numel() == 0:
        return logits.sum() * 0
    min_kept = max(1, int(pixel.numel() * min_kept_fraction))
    hard = pixel > -torch.log(torch.tensor(thresh, device=pixel.device))  # p(true class) < thresh
    if int(hard.sum()) < min_kept:
        return pixel.topk(min_kept).values.mean()
    return pixel[hard].mean()


def boundary_target(target: Tensor) -> Tensor:
    """N×H×W labels -> N×1×H×W float: 1 where a 3×3 neighbourhood holds another (non-ignored) label. (PIDNet §3.4
    takes its boundary ground truth from Canny edges of the label map; a label change is the same edge.)"""
    t = target.float()[:, None]
    hi = F.max_pool2d(torch.where(t == IGNORE_INDEX, -1.0, t), 3, 1, 1)
    lo = -F.max_pool2d(-torch.where(t == IGNORE_INDEX, 1e4, t), 3, 1, 1)
    return ((hi != lo) & (t != IGNORE_INDEX)).float()


def balanced_bce(logit: Tensor, edge: Tensor) -> Tensor:
    """Class-balanced binary cross-entropy of a boundary logit map against a 0/1 target (PIDNet §3.4, eq. 7: the
    rare edge pixels weighted by the share of non-edge ones and vice versa)."""
    if logit.shape[-2:] != edge.shape[-2:]:
        logit = F.interpolate(logit, size=edge.shape[-2:], mode="bilinear", align_corners=False)
    pos = edge.mean()
    weight = torch.where(edge > 0.5, 1 - pos, pos)
    return F.binary_cross_entropy_with_logits(logit, edge, weight=weight)


def detail_target(target: Tensor, num_classes: int) -> Tensor:
    """STDC's detail ground truth (§3.2, Fig. 5(e)): a Laplacian (3×3, centre 8) of the label map at strides 1, 2
    and 4, each thresholded at 0.1, upsampled, fused (the paper's learnt 1×1 fusion, its initial weights 0.6/0.3/0.1
    kept fixed) and thresholded again: a binary map of label edges."""
    t = torch.where(target == IGNORE_INDEX, 0, target).float()[:, None] / max(1, num_classes - 1)
    lap = torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]], device=t.device).view(1, 1, 3, 3)
    maps = []
    for stride in (1, 2, 4):
        edge = F.conv2d(t, lap, stride=stride, padding=1).clamp(min=0)
        edge = (edge > 0.1).float()
        maps.append(F.interpolate(edge, size=t.shape[-2:], mode="nearest"))
    fused = 0.6 * maps[0] + 0.3 * maps[1] + 0.1 * maps[2]
    return (fused > 0.1).float()


def detail_loss(logit: Tensor, edge: Tensor) -> Tensor:
    """STDC §3.2 eq. (2): binary cross-entropy plus Dice loss of the detail head against the detail target."""
    if logit.shape[-2:] != edge.shape[-2:]:
        logit = F.interpolate(logit, size=edge.shape[-2:], mode="bilinear", align_corners=False)
    prob = logit.sigmoid().flatten(1)
    e = edge.flatten(1)
    dice = 1 - (2 * (prob * e).sum(1) + 1) / (prob.pow(2).sum(1) + e.pow(2).sum(1) + 1)
    return F.binary_cross_entropy_with_logits(logit, edge) + dice.mean()


def upsample(x: Tensor, like: Tensor) -> Tensor:
    """Bilinear resize of ``x`` to ``like``'s H×W (align_corners False: ONNX Resize's half_pixel)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
