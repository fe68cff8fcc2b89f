"""Moved: the TensorRT backend lives in ``edgeseg.runtime.tensorrt`` (``build``: engines, ``cache``: keys and
locks, ``session``: running them). This module keeps the old import paths working."""
from __future__ import annotations

from edgeseg.runtime.tensorrt.build import build_engine, plugin_record, resolve_plugin_libraries
from edgeseg.runtime.tensorrt.cache import sha256_file
from edgeseg.runtime.tensorrt.session import TensorRTSession, read_engine_sidecar

__all__ = ["TensorRTSession", "build_engine", "plugin_record", "read_engine_sidecar", "resolve_plugin_libraries", "sha256_file"]
