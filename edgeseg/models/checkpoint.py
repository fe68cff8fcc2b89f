"""Checkpoints: weights + model config + class names + normalisation, saved atomically and loadable
with ``torch.load(weights_only=True)`` (only tensors, numbers, strings, lists and dicts inside)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edgeseg.errors import ModelError
from edgeseg.io import atomic_path
from edgeseg.models.registry import create

FORMAT = "edgeseg-checkpoint/1"


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict, **state) -> None:
    """``meta``: class_names, mean, std, in_channels... (the ONNX metadata fields); ``state``: optimiser,
    epoch and whatever else resuming needs."""
    payload = {"format": FORMAT, "config": dict(model.edgeseg_config), "meta": meta,
               "state_dict": model.state_dict(), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}", "check the path, or train one with 'edgeseg train'")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch's own errors all mean "not a checkpoint"
        raise ModelError(f"{path} is not a readable checkpoint ({type(e).__name__})",
                         "pass a .pt file written by 'edgeseg train'") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an edgeseg checkpoint (no '{FORMAT}' format tag)",
                         "pass a .pt file written by 'edgeseg train'")
    return payload


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """The model with its weights loaded (eval mode), and the whole checkpoint (config, meta, state)."""
    payload = read_checkpoint(path)
    cfg = dict(payload["config"])
    model = create(cfg.pop("name"), **cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the model ({str(e).splitlines()[0][:200]})",
                         "the checkpoint was written by another edgeseg version; retrain or re-save it") from None
    return model.eval(), payload
