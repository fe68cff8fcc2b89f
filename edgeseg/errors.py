"""Errors a user can cause and fix. Every message says what went wrong and how to fix it.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; anything that is
not an EdgeSegError is a bug in edgeseg and keeps its traceback.
"""
from __future__ import annotations


class EdgeSegError(Exception):
    """Base class: ``what`` went wrong, ``fix`` tells the user what to do."""

    exit_code = 2

    def __init__(self, what: str, fix: str = ""):
        self.what = what
        self.fix = fix
        super().__init__(f"{what} -- {fix}" if fix else what)


class DataError(EdgeSegError):
    """A data set, image or mask is missing, unreadable or malformed."""


class ModelError(EdgeSegError):
    """An unknown model name, bad model arguments, or a file that is not a checkpoint."""


class OnnxFileError(EdgeSegError):
    """A file that is not a (readable, valid) ONNX model, or lacks edgeseg metadata."""


class InputError(EdgeSegError):
    """A tensor of the wrong shape or dtype was given to a session."""


class BackendError(EdgeSegError):
    """A backend that is not installed or cannot run here (no GPU, no TensorRT, missing plugin)."""


class ExportError(EdgeSegError):
    """Export to ONNX failed."""


class ExportCheckError(ExportError):
    """An exported graph that does not match PyTorch (``edgeseg.export_onnx``'s check); ``report`` is the
    ``ParityReport``, the graph is kept at ``report.path`` (``<stem>.failed.onnx``)."""

    def __init__(self, what: str, fix: str = "", report=None):
        super().__init__(what, fix)
        self.report = report


class SourceError(EdgeSegError):
    """A video file, stream URL, camera or pipeline that cannot be opened or read, or that changes mid-stream."""
