"""The judges: a candidate session's outputs against a reference's, held to ``edgeseg.tolerances``.

Semantic models: max and p99 abs error of the logits, argmax agreement, and (with ground truth) the mIoU
of both and its drop; sigmoid outputs are judged by their thresholded foreground instead (agreement, and
foreground IoU with ground truth), never by argmax over one channel. Instance models: detections matched by box
overlap (never by slot), then box IoU, score difference and mask agreement of the matched pairs, and (with ground
truth) the mask AP of both; INT8 with ground truth is held to the mask AP drop alone. Panoptic models:
segment ids pixel by pixel and PQ against the reference.

Below ``parity`` (the PyTorch-reference checks and the verb) and ``quant`` (which checks each graph it converts
before writing it): both judge through this one module, so there is one way of judging.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

from edgeseg.metrics import ConfusionMatrix
from edgeseg.metrics.instance import InstanceTruth, detections, match_detections
from edgeseg.runtime import Session
from edgeseg.runtime.prepost import batch_size_hw, decide, foreground, model_scores, scores_at_image
from edgeseg.tolerances import tolerance


@dataclass
class ParityReport:
    precision: str
    max_abs: float = 0.0
    p99_abs: float = 0.0
    ref_max_abs: float = 0.0
    argmax_agreement: float = 1.0
    foreground_agreement: float = 1.0  # sigmoid outputs ("binary" kind): thresholded decisions that agree
    # mIoU for softmax outputs; the foreground IoU (mean over foreground classes) for sigmoid outputs
    miou_reference: float | None = None
    miou_candidate: float | None = None
    pixels: int = 0
    failures: list[str] = field(default_factory=list)
    kind: str = "logits"
    # panoptic models
    id_agreement: float = 1.0
    pq_vs_reference: float | None = None
    # instance models
    detections: int = 0
    matched: int = 0
    min_box_iou: float = 1.0
    max_score_delta: float = 0.0
    mask_agreement: float = 1.0
    mask_ap_reference: float | None = None  # with ground truth (InstanceTruth labels), 0–1
    mask_ap_candidate: float | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def miou_drop(self) -> float | None:
        if self.miou_reference is None or self.miou_candidate is None:
            return None
        return self.miou_reference - self.miou_candidate

    def summary(self) -> str:
        if self.kind == "panoptic":
            pq = "n/a (no segments)" if self.pq_vs_reference is None else f"{self.pq_vs_reference:.4f}"
            return (f"{self.precision}: segment ids agree on {100 * self.id_agreement:.3f}% of pixels, PQ vs reference {pq}, "
                    + ("PASS" if self.passed else "FAIL: " + "; ".join(self.failures)))
        if self.kind == "labels":
            parts = [f"{self.precision}: label agreement {100 * self.argmax_agreement:.3f}% over {self.pixels} pixels"]
            if self.miou_drop is not None:
                parts.append(f"mIoU {self.miou_reference:.4f} -> {self.miou_candidate:.4f} (Δ {-100 * self.miou_drop:+.2f} pts)")
            return ", ".join(parts + ["PASS" if self.passed else "FAIL: " + "; ".join(self.failures)])
        if self.kind == "instance":
            if self.detections == 0:  # e.g. an untrained detector on random inputs: nothing but shapes to compare
                return f"{self.precision}: no detections on the check inputs (shapes only), " + (
                    "PASS" if self.passed else "FAIL: " + "; ".join(self.failures))
            parts = [f"{self.precision}: {self.matched}/{self.detections} detections matched",
                     f"box IoU ≥ {self.min_box_iou:.4f}", f"score |Δ| ≤ {self.max_score_delta:.3g}",
                     f"mask agreement {100 * self.mask_agreement:.2f}%"]
            if self.mask_ap_reference is not None:
                parts.append(f"mask AP {100 * self.mask_ap_reference:.2f} -> {100 * self.mask_ap_candidate:.2f}")
            parts.append("PASS" if self.passed else "FAIL: " + "; ".join(self.failures))
            return ", ".join(parts)
        binary = self.kind == "binary"
        parts = [f"{self.precision}: max|Δ| {self.max_abs:.3g} (p99 {self.p99_abs:.3g}, |ref| ≤ {self.ref_max_abs:.3g})",
                 f"foreground agreement {100 * self.foreground_agreement:.3f}%" if binary
                 else f"argmax agreement {100 * self.argmax_agreement:.3f}%"]
        if self.miou_drop is not None:
            parts.append(f"{'foreground IoU' if binary else 'mIoU'} {self.miou_reference:.4f} -> {self.miou_candidate:.4f} "
                         f"(Δ {-100 * self.miou_drop:+.2f} pts)")  # Δ: candidate − reference, as the arrow reads
        parts.append("PASS" if self.passed else "FAIL: " + "; ".join(self.failures))
        return ", ".join(parts)

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "miou_drop": self.miou_drop}


def compare(reference: Session, candidate: Session, batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
            precision: str | None = None) -> ParityReport:
    """Run both sessions on each (batch, labels-or-None) and judge the outputs by the tolerance table. Decisions are
    compared at the labels' size (the image's) where labels are given, else at the batch's size."""
    precision = precision or candidate.precision
    if "frames" in (reference.meta.io, candidate.meta.io):
        return compare_frames(reference, candidate, batches, precision)
    if reference.meta.task == "instance":
        return compare_instances(reference, candidate, batches, precision)
    if reference.meta.task == "panoptic":
        return compare_panoptic(reference, candidate, (b for b, _ in batches), precision)
    meta = reference.meta
    kind = "logits" if meta.output_kind == "softmax" else "binary"  # sigmoid outputs: by thresholded foreground
    tol = tolerance(precision, kind)
    report = ParityReport(precision, kind=kind)
    if candidate.meta.output_kind != meta.output_kind:
        report.failures.append(f"the candidate's output is {candidate.meta.output_kind}, the reference's {meta.output_kind}")
        return report
    errors, agree, total = [], 0, 0
    cm_ref = cm_out = None
    for batch, labels in batches:
        ref = model_scores(reference.run(batch), meta)
        out = model_scores(candidate.run(batch), candidate.meta)
        if ref.shape != out.shape:
            report.failures.append(f"output shape {out.shape} != reference {ref.shape}")
            return report
        if np.isfinite(ref).all() and not np.isfinite(out).all():  # max() would pass NaN by
            report.failures.append(f"the candidate's scores hold {int((~np.isfinite(out)).sum())} NaN/inf values")
            return report
        diff = np.abs(ref - out)
        report.max_abs = max(report.max_abs, float(diff.max()))
        report.ref_max_abs = max(report.ref_max_abs, float(np.abs(ref).max()))
        errors.append(np.percentile(diff, 99))
        size = tuple(labels.shape[-2:]) if labels is not None else batch_size_hw(batch, meta)
        s_ref, s_out = scores_at_image(ref, meta, size), scores_at_image(out, meta, size)
        pick = decide if kind == "logits" else foreground  # never argmax over sigmoid channels
        d_ref, d_out = pick(s_ref, meta), pick(s_out, meta)
        agree += int((d_ref == d_out).sum())
        total += d_ref.size
        if labels is not None:
            if cm_ref is None:
                cm_ref = ConfusionMatrix(meta.num_classes, meta.ignore_index)
                cm_out = ConfusionMatrix(meta.num_classes, meta.ignore_index)
            cm_ref.update(decide(s_ref, meta), labels)
            cm_out.update(decide(s_out, meta), labels)
    if total == 0:
        report.failures.append("no batches were compared")
        return report
    report.p99_abs = float(max(errors))
    report.pixels = total
    if kind == "binary":
        return _judge_binary(report, agree / total, cm_ref, cm_out, tol)
    report.argmax_agreement = agree / total
    if cm_ref is not None:
        report.miou_reference = cm_ref.scores().miou
        report.miou_candidate = cm_out.scores().miou
    bound = None if tol.atol is None else tol.atol + tol.rtol * report.ref_max_abs
    if bound is not None and report.max_abs > bound:
        report.failures.append(f"max|Δ| {report.max_abs:.3g} > {bound:.3g}")
    if report.argmax_agreement < tol.min_argmax_agreement:
        report.failures.append(f"argmax agreement {100 * report.argmax_agreement:.3f}% < {100 * tol.min_argmax_agreement:.1f}%")
    if report.miou_drop is not None and report.miou_drop > tol.max_miou_drop:
        report.failures.append(f"mIoU drop {100 * report.miou_drop:.2f} pts > {100 * tol.max_miou_drop:.2f}")
    return report


def _judge_binary(report: ParityReport, agreement: float, cm_ref, cm_out, tol) -> ParityReport:
    """Sigmoid outputs: probability error, foreground agreement and (with ground truth) the foreground IoU
    (mean over the foreground classes) of both, against the binary row of the tolerance table."""
    report.foreground_agreement = agreement
    if cm_ref is not None:
        report.miou_reference = float(np.nanmean(cm_ref.scores().per_class_iou[1:]))
        report.miou_candidate = float(np.nanmean(cm_out.scores().per_class_iou[1:]))
    if tol.atol is not None and report.max_abs > tol.atol:
        report.failures.append(f"max|Δ| of the probabilities {report.max_abs:.3g} > {tol.atol:.3g}")
    if agreement < tol.min_foreground_agreement:
        report.failures.append(f"foreground agreement {100 * agreement:.3f}% < {100 * tol.min_foreground_agreement:.1f}%")
    drop = report.miou_drop
    if drop is not None and drop > tol.max_foreground_iou_drop:  # NaN (no foreground, truth or predicted) is no drop
        report.failures.append(f"foreground IoU drop {100 * drop:.2f} pts > {100 * tol.max_foreground_iou_drop:.2f}")
    return report


def compare_instances(reference: Session, candidate: Session, batches: Iterable[tuple[np.ndarray, object]],
                      precision: str) -> ParityReport:
    """Detections of both sessions matched image by image by box IoU (same label), then held to the
    instance row of the tolerance table; labels given as ``[InstanceTruth]`` per batch add mask AP."""
    def triples():
        for batch, labels in batches:
            ref, out = reference.run(batch), candidate.run(batch)
            for i in range(batch.shape[0]):
                truth = labels[i] if isinstance(labels, list) else None
                size = truth.masks.shape[1:] if truth is not None else None  # the image's, before padding
                yield detections(ref, i, size), detections(out, i, size), truth

    return judge_instances(triples(), precision, class_names=reference.meta.class_names)


def judge_instances(pairs: Iterable[tuple], precision: str, kind: str = "instance",
                    class_names: list[str] | None = None) -> ParityReport:
    """Per image (reference detections, candidate detections[, InstanceTruth or None]), each with boxes, scores,
    labels and masks: matched by box IoU (same label), then held to the ``kind`` row of the tolerance table. Where
    every image has ground truth, both sides' mask AP too: held to the row's ``max_ap_drop``, and for INT8 that
    alone (INT8 reorders near-tied detections and reshapes masks by a pixel; against ground truth the metric that
    matters is mask AP, and the agreement measures are reported, not held)."""
    from edgeseg.metrics.instance import mask_ap

    tol = tolerance(precision, kind)
    report = ParityReport(precision, kind="instance")
    inter = union = 0
    ious, deltas = [], []
    scored: list[tuple] = []
    all_truth = True
    for r, c, *rest in pairs:
        truth = rest[0] if rest else None
        all_truth = all_truth and truth is not None
        if all_truth:  # AP needs every image's truth; without it, hold no detections (masks) beyond this image
            scored.append((truth, r, c))
        else:
            scored.clear()
        m = match_detections(r["boxes"], r["scores"], r["labels"], c["boxes"], c["labels"])
        report.detections += max(len(r["boxes"]), len(c["boxes"]))
        report.matched += len(m.pairs)
        for (a, b), iou in zip(m.pairs, m.ious):
            ious.append(held_box_iou(r["boxes"][a], c["boxes"][b], iou, tol))
            deltas.append(abs(float(r["scores"][a]) - float(c["scores"][b])))
            ma, mb = r["masks"][a] >= 0.5, c["masks"][b] >= 0.5
            inter += int((ma & mb).sum())
            union += int((ma | mb).sum())
    report.min_box_iou = float(min(ious)) if ious else 1.0
    report.max_score_delta = float(max(deltas)) if deltas else 0.0
    report.mask_agreement = inter / union if union else 1.0
    agreement: list[str] = []
    matched = report.matched / report.detections if report.detections else 1.0
    if matched < tol.min_matched:
        agreement.append(f"{report.matched}/{report.detections} detections matched < {100 * tol.min_matched:.1f}%")
    if report.min_box_iou < tol.min_box_iou:
        agreement.append(f"a matched box IoU {report.min_box_iou:.4f} < {tol.min_box_iou}")
    if report.max_score_delta > tol.max_score_delta:
        agreement.append(f"score |Δ| {report.max_score_delta:.3g} > {tol.max_score_delta:.3g}")
    if report.mask_agreement < tol.min_mask_agreement:
        agreement.append(f"mask agreement {100 * report.mask_agreement:.2f}% < {100 * tol.min_mask_agreement:.1f}%")
    by_ap = bool(scored) and all_truth
    if by_ap:
        names = class_names or [str(i) for i in range(1 + max((int(t.labels.max()) for t, _, _ in scored if len(t.labels)), default=0))]
        report.mask_ap_reference = mask_ap(((t, r) for t, r, _ in scored), names)
        report.mask_ap_candidate = mask_ap(((t, c) for t, _, c in scored), names)
        drop = report.mask_ap_reference - report.mask_ap_candidate
        if drop > tol.max_ap_drop:
            report.failures.append(f"mask AP {100 * report.mask_ap_reference:.2f} -> {100 * report.mask_ap_candidate:.2f} "
                                   f"drops {100 * drop:.2f} pts > {100 * tol.max_ap_drop:.2f}")
    if not (by_ap and precision == "int8"):
        report.failures += agreement
    return report


def held_box_iou(ref_box, cand_box, iou: float, tol) -> float:
    """The IoU a matched pair is held to ``tol.min_box_iou`` by; a degenerate reference box (a side under
    ``DEGENERATE_BOX_PX``) is judged by its corners instead: 1.0 when each is within ``tol.max_corner_px``."""
    from edgeseg.tolerances import DEGENERATE_BOX_PX

    ref_box, cand_box = np.asarray(ref_box, np.float64), np.asarray(cand_box, np.float64)
    if min(ref_box[2] - ref_box[0], ref_box[3] - ref_box[1]) >= DEGENERATE_BOX_PX:
        return float(iou)
    return 1.0 if float(np.abs(ref_box - cand_box).max()) <= tol.max_corner_px else float(iou)


def compare_panoptic(reference: Session, candidate: Session, batches: Iterable[np.ndarray], precision: str) -> ParityReport:
    """Segment-id maps compared pixel by pixel, and the candidate's segments scored (PQ) with the reference's
    as ground truth, against the panoptic row of the tolerance table."""
    def pairs():
        for batch in batches:
            ref, out = reference.run(batch), candidate.run(batch)
            for i in range(batch.shape[0]):
                yield (ref["panoptic"][i], ref["segments"][i]), (out["panoptic"][i], out["segments"][i])

    return judge_panoptic(pairs(), reference.meta, precision)


def judge_panoptic(pairs: Iterable[tuple[tuple, tuple]], meta, precision: str, kind: str = "panoptic") -> ParityReport:
    """Per image ((reference ids, table), (candidate ids, table)): ids compared pixel by pixel and the candidate's
    segments scored (PQ) with the reference's as ground truth, against the ``kind`` row of the tolerance table."""
    from edgeseg.evaluate import thing_classes_of
    from edgeseg.metrics.panoptic import PanopticEvaluator

    tol = tolerance(precision, kind)
    report = ParityReport(precision, kind="panoptic")
    ev = PanopticEvaluator(meta.num_classes, thing_classes_of(meta))
    agree = 0
    for (ref_ids, ref_table), (out_ids, out_table) in pairs:
        if ref_ids.shape != out_ids.shape:
            report.failures.append(f"panoptic shape {out_ids.shape} != reference {ref_ids.shape}")
            return report
        agree += int((ref_ids == out_ids).sum())
        report.pixels += ref_ids.size
        ev.add(out_ids, out_table, ref_ids, ref_table)
    if not report.pixels:
        report.failures.append("no batches were compared")
        return report
    report.id_agreement = agree / report.pixels
    scores = ev.scores()
    report.pq_vs_reference = scores.pq if scores.classes else None
    if report.id_agreement < tol.min_id_agreement:
        report.failures.append(f"segment ids agree on {100 * report.id_agreement:.3f}% < {100 * tol.min_id_agreement:.1f}%")
    if report.pq_vs_reference is not None and report.pq_vs_reference < tol.min_pq_vs_reference:
        report.failures.append(f"PQ vs reference {report.pq_vs_reference:.4f} < {tol.min_pq_vs_reference}")
    return report


def compare_frames(reference: Session, candidate: Session, batches: Iterable[tuple[np.ndarray, np.ndarray | None]],
                   precision: str) -> ParityReport:
    """Where either side is a deploy graph: both sessions' decisions on the same uint8 frames (``predict``: the float
    pipeline on one side, the graph's own on the other), held to the deploy rows of the tolerance table: label
    agreement (and the mIoU drop, with labels) for semantic models, matched detections and their masks for instance
    models, segment ids and PQ against the reference for panoptic ones."""
    from edgeseg.runtime.prepost import predict

    meta = reference.meta
    masks = meta.task == "instance"

    def pairs():
        for frames, labels in batches:
            for i, frame in enumerate(frames):
                yield (predict(reference, frame, masks=masks), predict(candidate, frame, masks=masks),
                       None if labels is None else labels[i])

    if meta.task == "instance":  # labels: [InstanceTruth] per frame where the data set has instance ids
        return judge_instances(((r, c, t if isinstance(t, InstanceTruth) else None) for r, c, t in pairs()), precision,
                               "deploy_instance", meta.class_names)
    if meta.task == "panoptic":
        return judge_panoptic((((r["panoptic"], r["segments"]), (c["panoptic"], c["segments"])) for r, c, _ in pairs()),
                              meta, precision, "deploy_panoptic")
    tol = tolerance(precision, "labels")
    report = ParityReport(precision, kind="labels")
    cm_ref = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    cm_out = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    agree = scored = 0
    for r, c, labels in pairs():
        if r["labels"].shape != c["labels"].shape:
            report.failures.append(f"labels shape {c['labels'].shape} != reference {r['labels'].shape}")
            return report
        agree += int((r["labels"] == c["labels"]).sum())
        report.pixels += r["labels"].size
        if labels is not None:
            cm_ref.update(r["labels"], labels)
            cm_out.update(c["labels"], labels)
            scored += 1
    if not report.pixels:
        report.failures.append("no frames were compared")
        return report
    report.argmax_agreement = agree / report.pixels
    if scored:
        report.miou_reference, report.miou_candidate = cm_ref.scores().miou, cm_out.scores().miou
    if report.argmax_agreement < tol.min_argmax_agreement:
        report.failures.append(f"label agreement {100 * report.argmax_agreement:.3f}% < {100 * tol.min_argmax_agreement:.1f}%")
    if report.miou_drop is not None and report.miou_drop > tol.max_miou_drop:
        report.failures.append(f"mIoU drop {100 * report.miou_drop:.2f} pts > {100 * tol.max_miou_drop:.2f}")
    return report


def random_batches(meta, sizes: list[tuple[int, int]], batch: int = 1, seed: int = 0):
    """Standard-normal inputs of each (H, W) in ``sizes`` (a fixed-size model's own size instead), in the model's layout."""
    rng = np.random.default_rng(seed)
    for h, w in sizes:
        if meta.io == "frames":  # uint8 frames of the size asked, whatever the network size
            yield rng.integers(0, 256, (batch, h, w, meta.in_channels), dtype=np.uint8), None
            continue
        h, w = meta.input_size or (h, w)
        x = rng.standard_normal((batch, meta.in_channels, h, w)).astype(np.float32)
        yield (x.transpose(0, 2, 3, 1).copy() if meta.input_layout == "NHWC" else x), None
