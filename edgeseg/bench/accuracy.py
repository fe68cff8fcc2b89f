"""Accuracy of a variant: its task's metric on a data set, its agreement with a reference, its predictions."""
from __future__ import annotations

import numpy as np

from edgeseg.runtime import Session


def agreement(reference: Session, candidate: Session, batches: list[tuple[np.ndarray, np.ndarray | None]],
              precision: str) -> tuple[float, str]:
    """Agreement of a variant's decisions with the reference's, through ``parity.compare`` (so the metadata's
    decision applies): argmax (softmax), thresholded foreground (sigmoid), matched-mask IoU (instance) or
    segment-id agreement (panoptic). Returns (value, kind)."""
    from edgeseg.parity import compare

    r = compare(reference, candidate, batches, precision)
    return {"binary": (r.foreground_agreement, "foreground"), "instance": (r.mask_agreement, "mask"),
            "panoptic": (r.id_agreement, "segment id")}.get(r.kind, (r.argmax_agreement, "argmax"))


def accuracy(session: Session, dataset, detail: bool = False) -> dict:
    """The task's accuracy on ``dataset``: mIoU (softmax), foreground IoU (sigmoid: mean IoU of the foreground
    classes, as ``edgeseg eval`` prints it per class), mask AP (instance) or PQ (panoptic). ``detail``: a panoptic
    model's ``pq_detail`` too (PQ, SQ, RQ overall, of things, of stuff and per class)."""
    from edgeseg.evaluate import evaluate, evaluate_instances, evaluate_panoptic

    meta = session.meta
    if meta.task == "instance":
        s = evaluate_instances(session, dataset, progress=False)
        return {"accuracy_metric": "mask AP", "accuracy": s["segm"].ap, "mask_ap50": s["segm"].ap50, "box_ap": s["bbox"].ap}
    if meta.task == "panoptic":
        s = evaluate_panoptic(session, dataset, progress=False)
        return {"accuracy_metric": "PQ", "accuracy": s["panoptic"].pq, "miou": s["semantic"].miou,
                **({"pq_detail": s["panoptic"].as_dict()} if detail else {})}
    s = evaluate(session, dataset, progress=False)
    if meta.output_kind == "softmax":
        return {"accuracy_metric": "mIoU", "accuracy": s.miou, "miou": s.miou}
    return {"accuracy_metric": "foreground IoU", "accuracy": float(np.nanmean(s.per_class_iou[1:])), "miou": s.miou}


def predictions(session: Session, dataset, indices: list[int]) -> list:
    """The variant's decision on each of ``indices`` (either I/O form): an H×W label map (semantic), the detections
    (instance), the segment-id map (panoptic)."""
    from edgeseg.runtime import predict

    out = []
    for i in indices:
        found = predict(session, dataset.raw(i)[0], masks=session.meta.task == "instance")
        out.append({"semantic": found.get("labels"), "instance": found, "panoptic": found.get("panoptic")}[session.meta.task])
    return out
