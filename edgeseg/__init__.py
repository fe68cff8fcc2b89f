"""edgeseg: deploy PyTorch segmentation models to ONNX Runtime and TensorRT."""
from __future__ import annotations

__version__ = "0.1.0"


def export_onnx(*args, **kwargs):
    """Export any ``nn.Module`` returning logits (or a dict of them); see ``edgeseg.export.export_onnx``."""
    from edgeseg.export import export_onnx as _export

    return _export(*args, **kwargs)


__all__ = ["__version__", "export_onnx"]
