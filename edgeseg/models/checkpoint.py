"""Checkpoints: weights + model config + class names + normalisation, saved atomically and loadable
with ``torch.load(weights_only=True)`` (only tensors, numbers, strings, lists and dicts inside).

A checkpoint is untrusted input. Before a model is built from it: its structure and types are checked,
its config against the registry's argument ranges, and the size of the model that config describes
(built on the ``meta`` device, which allocates nothing) against the number of values the file holds.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from edgeseg.errors import ModelError
from edgeseg.io import atomic_path
from edgeseg.models.registry import check_args, create

FORMAT = "edgeseg-checkpoint/1"
_FIX = "pass a .pt file written by 'edgeseg train'"


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict, **state) -> None:
    """``meta``: class_names, mean, std, in_channels... (the ONNX metadata fields); ``state``: optimiser,
    epoch and whatever else resuming needs."""
    payload = {"format": FORMAT, "config": dict(model.edgeseg_config), "meta": meta,
               "state_dict": model.state_dict(), **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _load_payload(path: Path):
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}", "check the path, or train one with 'edgeseg train'")
    try:
        # torch warns about odd pickle protocols in foreign bytes; the one line below says it all.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch's own errors all mean "not a checkpoint"
        raise ModelError(f"{path} is not a readable checkpoint ({type(e).__name__})", _FIX) from None


def load_model_file(path: str | Path, model_args: dict | None = None) -> tuple[nn.Module, dict | None]:
    """The model of any checkpoint edgeseg reads, the file read once: its own (with the checked payload:
    config, meta, state) or a torchvision Mask R-CNN state dict (payload None). ``model_args``: torchvision
    builder settings for a state dict (its score threshold, detections per image...); an edgeseg checkpoint's
    settings are its own."""
    path = Path(path)
    payload = _load_payload(path)
    if isinstance(payload, dict) and "format" not in payload:
        from edgeseg.models.detection import load_torchvision_checkpoint

        return load_torchvision_checkpoint(path, payload, **(model_args or {})), None
    if model_args:
        raise ModelError(f"{path}: model arguments ({', '.join(map(str, model_args))}) do not apply to an edgeseg checkpoint",
                         "drop --model-arg: the checkpoint's config sets them (they apply to zoo names and torchvision state dicts)")
    return _build(path, _checked(path, payload)), payload


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's payload, its structure and config checked (nothing is built)."""
    path = Path(path)
    return _checked(path, _load_payload(path))


def _checked(path: Path, payload) -> dict:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an edgeseg checkpoint (no '{FORMAT}' format tag)", _FIX)
    for key in ("config", "meta", "state_dict"):
        if not isinstance(payload.get(key), dict):
            what = "is missing" if key not in payload else f"is a {type(payload[key]).__name__}, not a dict"
            raise ModelError(f"{path}: checkpoint field '{key}' {what}", _FIX)
    config, state = payload["config"], payload["state_dict"]
    if not isinstance(config.get("name"), str):
        raise ModelError(f"{path}: checkpoint config has no model 'name'", _FIX)
    if not all(isinstance(k, str) for k in config):
        raise ModelError(f"{path}: checkpoint config has non-string keys", _FIX)
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError(f"{path}: checkpoint state_dict holds something other than named tensors", _FIX)
    try:
        check_args(**config)
    except ModelError as e:
        raise ModelError(f"{path}: {e.what}", e.fix or _FIX) from None
    except TypeError:  # a config key clashing with check_args' own parameters
        raise ModelError(f"{path}: checkpoint config is malformed", _FIX) from None
    return payload


def model_size(config: dict) -> int:
    """Values (parameters + buffers) of the model ``config`` describes, counted on the meta device."""
    cfg = dict(config)
    with torch.device("meta"):
        model = create(cfg.pop("name"), **cfg)
    return sum(t.numel() for t in model.state_dict().values())


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """The model with its weights loaded (eval mode), and the whole checkpoint (config, meta, state)."""
    payload = read_checkpoint(path)
    return _build(Path(path), payload), payload


def _build(path: Path, payload: dict) -> nn.Module:
    expected = model_size(payload["config"])
    present = sum(t.numel() for t in payload["state_dict"].values())
    if expected != present:
        raise ModelError(f"{path}: its config describes a model of {expected:,} values but its weights hold {present:,}",
                         "the config or the weights were altered; use the checkpoint 'edgeseg train' wrote")
    cfg = dict(payload["config"])
    model = create(cfg.pop("name"), **cfg)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not fit the model ({str(e).splitlines()[0][:200]})",
                         "the checkpoint was written by another edgeseg version; retrain or re-save it") from None
    return model.eval()
