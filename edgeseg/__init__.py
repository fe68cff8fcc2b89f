"""edgeseg: deploy PyTorch segmentation models to ONNX Runtime and TensorRT."""
from __future__ import annotations

__version__ = "0.1.0"


def export_onnx(model, path, **kwargs):
    """Export any ``nn.Module`` that returns logits (or a dict of them) to a self-describing ONNX file,
    then run it once in ONNX Runtime against PyTorch at two input sizes.

    Keyword arguments go to ``edgeseg.export.export_onnx`` (meta, sample, opset, dynamic, exporter).
    Returns the ``ParityReport`` (``.passed``, ``.summary()``); the metadata written is ``report.meta``.
    """
    from edgeseg.export import export_onnx as _export
    from edgeseg.parity import verify_export

    meta = _export(model, path, **kwargs)
    report = verify_export(model, path, meta)
    report.meta = meta
    return report


__all__ = ["__version__", "export_onnx"]
