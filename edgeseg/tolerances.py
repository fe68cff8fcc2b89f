"""The one tolerance table: per precision and output kind, used by parity tests, ``edgeseg parity``
and the benchmarks alike.

``atol + rtol * max|reference|`` bounds the max abs error (scaled by the reference's range, since
random-init and trained nets have logits of very different size). The metric that matters is held
too: argmax agreement and the mIoU drop against the reference (in mIoU points: 0.01 = 1 point). Kinds:
``logits`` (softmax outputs), ``binary`` (sigmoid outputs, by thresholded foreground), ``instance``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float | None  # None: the error is reported but not bounded (INT8 logits shift by design)
    rtol: float
    min_argmax_agreement: float
    max_miou_drop: float


TOLERANCES: dict[tuple[str, str], "Tolerance | BinaryTolerance | InstanceTolerance"] = {
    ("fp32", "logits"): Tolerance(atol=1e-4, rtol=1e-4, min_argmax_agreement=0.999, max_miou_drop=0.001),
    # FP16 and INT8 are judged by their decisions and the task's metric; max|Δ| is reported, not bounded (one pixel's
    # error can be large where the decision does not move). FP32 keeps the bound: there, any error is an export bug.
    ("fp16", "logits"): Tolerance(atol=None, rtol=0.0, min_argmax_agreement=0.99, max_miou_drop=0.005),
    ("int8", "logits"): Tolerance(atol=None, rtol=0.0, min_argmax_agreement=0.95, max_miou_drop=0.01),
}


@dataclass(frozen=True)
class BinaryTolerance:
    """Sigmoid outputs (``sigmoid_binary``, ``sigmoid_multilabel``), judged by their thresholded foreground."""
    atol: float | None               # max abs error of the probabilities (None: reported, not bounded)
    min_foreground_agreement: float  # pixels (of every channel) on the same side of the threshold / all pixels
    max_foreground_iou_drop: float   # foreground IoU with ground truth, reference - candidate (mean over channels)


TOLERANCES[("fp32", "binary")] = BinaryTolerance(atol=1e-4, min_foreground_agreement=0.999, max_foreground_iou_drop=0.001)
TOLERANCES[("fp16", "binary")] = BinaryTolerance(atol=None, min_foreground_agreement=0.99, max_foreground_iou_drop=0.005)
TOLERANCES[("int8", "binary")] = BinaryTolerance(atol=None, min_foreground_agreement=0.95, max_foreground_iou_drop=0.01)


# Degenerate boxes: IoU is ill-conditioned where a side is a fraction of a pixel (a 0.02 px tall box loses half its
# IoU to a 0.01 px shift). A matched pair whose reference box has a side under DEGENERATE_BOX_PX is held by its
# corners instead: each within ``max_corner_px`` pixels of the reference's.
DEGENERATE_BOX_PX = 1.0


@dataclass(frozen=True)
class InstanceTolerance:
    """Detections matched by box overlap (``edgeseg.metrics.instance.match_detections``), then held pair by pair."""
    min_box_iou: float          # every matched pair's box IoU (pairs of degenerate boxes: by corners, below)
    max_score_delta: float      # every matched pair's score difference
    min_mask_agreement: float   # binarised (≥ 0.5) masks of matched pairs: |A ∩ B| / |A ∪ B| over all pairs
    min_matched: float          # matched detections / detections (of the larger side)
    max_ap_drop: float          # mask AP, points/100, with ground truth
    max_corner_px: float = 0.1  # degenerate boxes (a side < DEGENERATE_BOX_PX): every corner's shift, pixels


TOLERANCES[("fp32", "instance")] = InstanceTolerance(0.99, 1e-4, 0.995, 0.99, 0.001)
# FP16 box IoU ≥ 0.90, not 0.95: boxes of nuclei are 10–25 px, where a sub-pixel corner shift costs IoU
# points. Measured on the trained nuclei model: worst matched box IoU 0.9405 on a random 128² input, while
# mask AP on the validation crops moved 0.0003 (benchmarks/results/instance_precision.md).
TOLERANCES[("fp16", "instance")] = InstanceTolerance(0.90, 1e-2, 0.97, 0.95, 0.005, max_corner_px=0.5)
TOLERANCES[("int8", "instance")] = InstanceTolerance(0.80, 0.1, 0.85, 0.80, 0.015, max_corner_px=2.0)


@dataclass(frozen=True)
class PanopticTolerance:
    """Panoptic outputs: the id maps pixel by pixel, and the candidate's segments scored as predictions of the
    reference's (PQ against the reference: 1.0 when every segment matches at IoU > 0.5 with IoU 1)."""
    min_id_agreement: float      # pixels whose segment id (and so segment) is the same
    min_pq_vs_reference: float   # PQ of the candidate with the reference as ground truth
    max_pq_drop: float           # PQ, points/100, with ground truth


TOLERANCES[("fp32", "panoptic")] = PanopticTolerance(0.995, 0.99, 0.001)
TOLERANCES[("fp16", "panoptic")] = PanopticTolerance(0.98, 0.95, 0.005)
TOLERANCES[("int8", "panoptic")] = PanopticTolerance(0.90, 0.80, 0.02)


# Deploy graphs (uint8 frames in, decisions out) against the float pipeline on the same frames: kind ``labels``
# (semantic decisions; only agreement and the mIoU drop: there are no logits to compare), ``deploy_instance`` (every
# detection matched at FP32) and ``deploy_panoptic`` (ids and PQ against the float pipeline's segments).
TOLERANCES[("fp32", "labels")] = Tolerance(atol=None, rtol=0.0, min_argmax_agreement=0.999, max_miou_drop=0.001)
TOLERANCES[("fp16", "labels")] = Tolerance(atol=None, rtol=0.0, min_argmax_agreement=0.99, max_miou_drop=0.005)
TOLERANCES[("int8", "labels")] = Tolerance(atol=None, rtol=0.0, min_argmax_agreement=0.95, max_miou_drop=0.01)
TOLERANCES[("fp32", "deploy_instance")] = InstanceTolerance(0.99, 1e-4, 0.995, 1.0, 0.001)
TOLERANCES[("fp16", "deploy_instance")] = TOLERANCES[("fp16", "instance")]
TOLERANCES[("int8", "deploy_instance")] = TOLERANCES[("int8", "instance")]
TOLERANCES[("fp32", "deploy_panoptic")] = PanopticTolerance(0.999, 0.999, 0.001)
TOLERANCES[("fp16", "deploy_panoptic")] = TOLERANCES[("fp16", "panoptic")]
TOLERANCES[("int8", "deploy_panoptic")] = TOLERANCES[("int8", "panoptic")]


def tolerance(precision: str, kind: str = "logits"):
    try:
        return TOLERANCES[(precision, kind)]
    except KeyError:
        raise KeyError(f"no tolerance for {precision} {kind}; known: {sorted(TOLERANCES)}") from None
