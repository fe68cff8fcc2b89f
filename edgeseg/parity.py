"""Parity: a candidate backend/precision against the PyTorch reference, on the metric that matters.

Semantic models: max and p99 abs error of the logits, argmax agreement, and (with ground truth) the mIoU
of both and its drop; sigmoid outputs are judged by their thresholded foreground instead (agreement, and
foreground IoU with ground truth), never by argmax over one channel. Instance models: detections matched by box overlap (never by slot), then box IoU,
score difference and mask agreement of the matched pairs. Pass/fail against ``edgeseg.tolerances``.
"""
from __future__ import annotations

# The judging lives in edgeseg.judge (below quant, which checks what it converts); re-exported here.
from edgeseg.judge import (ParityReport, compare, compare_frames, compare_instances, compare_panoptic,  # noqa: F401
                           held_box_iou, judge_instances, judge_panoptic, random_batches)


def dataset_batches(dataset, meta, limit: int | None = None):
    """(a batch of one image as the model takes it, its labels) for the first ``limit`` images of a data set: 1×H×W
    labels, or for an instance model on a data set with instance ids ``[InstanceTruth]`` (judged by mask AP)."""
    from edgeseg.metrics.instance import instance_truth
    from edgeseg.runtime.prepost import model_input

    instances = getattr(dataset, "instances", None) if meta.task == "instance" and not getattr(dataset, "coco", None) else None
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        image, mask = dataset.raw(i)
        yield model_input(image, meta), ([instance_truth(instances[i], mask)] if instances is not None else mask[None])


def verify_export(model, onnx_path, meta) -> ParityReport:
    """Run a fresh export once in ONNX Runtime against PyTorch, at two input sizes (checks dynamic H/W)."""
    from edgeseg.runtime import open_session

    d = meta.size_divisor
    base = max(4 * d, 128) // d * d
    sizes = [(base, base), (base + d, base + 2 * d)]
    if meta.io == "frames":  # against the float pipeline (PyTorch) on frames that need padding
        from edgeseg.export.deploy import float_twin

        sizes = [(base - 3, base + 5), (base + d + 1, base + 2 * d - 7)]
        return compare(open_session(model, "torch", meta=float_twin(meta)), open_session(onnx_path),
                       random_batches(meta, sizes), "fp32")
    return compare(open_session(model, "torch", meta=meta), open_session(onnx_path), random_batches(meta, sizes), "fp32")
