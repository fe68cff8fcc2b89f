"""How the ops export: the flavour switch and the plugin-node emitter (one node per op call)."""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch

FLAVOURS = ("portable", "tensorrt")
PLUGIN_DOMAIN = "edgeseg"
PLUGIN_VERSION = "1"
_flavour = "portable"


def flavour() -> str:
    return _flavour


@contextlib.contextmanager
def export_flavour(name: str) -> Iterator[None]:
    """Within this block the ops export as ``name`` (``portable`` or ``tensorrt``)."""
    global _flavour
    if name not in FLAVOURS:
        raise ValueError(f"unknown ONNX flavour '{name}'; use one of {FLAVOURS}")
    previous, _flavour = _flavour, name
    try:
        yield
    finally:
        _flavour = previous


def emitting_plugin() -> bool:
    """True while exporting the ``tensorrt`` flavour: ops then emit their plugin node instead of math."""
    return _flavour == "tensorrt" and torch.onnx.is_in_onnx_export()


def plugin_node(op: str, inputs: Sequence[torch.Tensor], attrs: dict, dtype: torch.dtype, shape) -> torch.Tensor:
    """One ``edgeseg::<op>`` node; ``edgeseg.export.surgery.finish_plugin_nodes`` checks and completes it."""
    return torch.onnx.ops.symbolic(f"{PLUGIN_DOMAIN}::{op}", tuple(inputs), attrs, dtype=dtype, shape=shape, version=1)


def plugin_node_multi(op: str, inputs: Sequence[torch.Tensor], attrs: dict, dtypes, shapes) -> Sequence[torch.Tensor]:
    return torch.onnx.ops.symbolic_multi_out(f"{PLUGIN_DOMAIN}::{op}", tuple(inputs), attrs, dtypes=dtypes,
                                             shapes=shapes, version=1)
