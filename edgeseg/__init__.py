"""edgeseg: deploy PyTorch segmentation models to ONNX Runtime and TensorRT."""
from __future__ import annotations

__version__ = "0.1.0"


def export_onnx(model, path, **kwargs):
    """Export any ``nn.Module`` that returns logits (or a dict of them), or a torchvision Mask R-CNN, to a
    self-describing ONNX file, then run it once in ONNX Runtime against PyTorch at two input sizes.

    Keyword arguments go to ``edgeseg.export.export_onnx`` (meta, sample, opset, dynamic, exporter), except
    ``crf`` (True, a dict of ``edgeseg.crf.CRFParams`` fields, or one): a semantic softmax model then carries
    ``edgeseg.crf``'s mean-field layer behind its logits (refined logits out; checked against it in PyTorch).
    Returns the ``ParityReport`` (``.passed``, ``.summary()``); the metadata written is ``report.meta``,
    the file written ``report.path``. A graph that does not match PyTorch is never written under ``path``:
    it is kept as ``<stem>.failed.onnx`` beside it, for inspection, and ``edgeseg.errors.ExportCheckError``
    is raised (its ``report`` is the failed check's), as ``edgeseg export`` exits 2.
    """
    import os
    from pathlib import Path

    from edgeseg.export import export_onnx as _export
    from edgeseg.io import atomic_path
    from edgeseg.models.detection import wrap_torchvision
    from edgeseg.parity import verify_export

    model = wrap_torchvision(model)  # torchvision's Mask R-CNN returns per-image lists: give it the instance contract
    crf = kwargs.pop("crf", None)
    if crf:  # edgeseg.crf's mean-field layer behind the logits: exported and checked as part of the model
        from edgeseg.crf import with_crf
        from edgeseg.export import default_meta

        sample = kwargs.get("sample")
        meta = kwargs.get("meta") or default_meta(model, in_channels=None if sample is None else sample.shape[1])
        model, kwargs["meta"] = with_crf(model, meta, crf)
        # the unrolled iterations are hundreds of slices: the legacy tracer takes seconds, dynamo minutes
        kwargs.setdefault("exporter", "legacy")
    path = Path(path)
    with atomic_path(path) as staged:
        meta = _export(model, staged, **kwargs)
        report = verify_export(model, staged, meta)
        report.meta, report.path = meta, path
        if not report.passed:
            report.path = failed_path(path)
            os.replace(staged, report.path)  # atomic_path then has nothing to publish under ``path``
    if not report.passed:  # raised here, so a caller cannot go on to open a file that was never written
        from edgeseg.errors import ExportCheckError

        raise ExportCheckError(f"the exported graph does not match PyTorch ({'; '.join(report.failures)}); nothing was "
                               f"written to {path}, the graph is kept as {report.path} for inspection",
                               "try exporter='legacy' and report the model", report=report)
    return report


def stream(model, source, **kwargs):
    """Run ``model`` (a Session, or a model file opened by its suffix: .onnx ONNX Runtime, .engine TensorRT, .pt
    torch; ``backend=`` overrides) over ``source`` (an image, a folder, a video file, an RTSP/HTTP URL, /dev/videoN,
    a GStreamer pipeline, or an ``edgeseg.runtime.stream.Source``) as pipelined stages: decode, infer, draw, write.

    Iterate it for ``(frame, result)``: the H×W×3 uint8 RGB frame and its decisions (``edgeseg.runtime.predict``).
    Live sources (URLs, cameras; ``live=`` overrides) keep the newest frame and count the dropped ones; files give
    every frame. Keyword arguments: ``out`` (an overlay video at the source's fps, finalised and renamed into place
    even when the loop is left early), ``labels_dir`` (a label PNG per frame), ``coco_json`` (instance models),
    ``summary_json``, ``max_pixels`` (refused from the container header), ``timeout`` (seconds, network and cameras),
    ``max_frames``. After the loop, ``.summary`` holds frames, drops, FPS, p50/p99 latency and ms per stage. Bad
    input raises ``edgeseg.errors.SourceError`` once the frames before it have been written.
    """
    from edgeseg.runtime.stream import Stream

    return Stream(model, source, **kwargs)


def failed_path(path):
    """Where an export that failed its parity check is kept: ``m.onnx`` -> ``m.failed.onnx``."""
    from pathlib import Path

    path = Path(path)
    return path.with_name(f"{path.stem}.failed{path.suffix or '.onnx'}")


__all__ = ["__version__", "export_onnx", "stream"]
