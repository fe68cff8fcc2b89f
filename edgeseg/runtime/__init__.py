"""Backends behind one Session protocol: ``torch`` (a checkpoint or nn.Module), ``onnxruntime``
(any edgeseg ONNX, any precision) and ``tensorrt`` (engines; needs a GPU and TensorRT)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from edgeseg.errors import BackendError, ModelError
from edgeseg.export.metadata import ModelMeta
from edgeseg.runtime.base import Session, check_batch
from edgeseg.runtime.prepost import labels_from_outputs, predict, preprocess

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def meta_from_checkpoint_dict(config: dict, meta: dict) -> ModelMeta:
    """The ONNX metadata of a checkpoint's model, each field checked (a checkpoint is untrusted input)."""
    extra = meta.get("config", {})
    if not isinstance(extra, dict):
        raise ModelError("checkpoint meta field 'config' is not a dict", "pass a .pt file written by 'edgeseg train'")
    checked = ModelMeta.validated({**meta, "model": config["name"], "config": {**config, **extra}}, "checkpoint", ModelError)
    from edgeseg.models import list_models, model_task

    built = model_task(config["name"]) if config["name"] in list_models(task=None) else None
    if built is not None and checked.task != built:  # post-processing reads the outputs the task names
        raise ModelError(f"checkpoint meta says task '{checked.task}' but its model '{config['name']}' is a {built} model",
                         "fix the checkpoint's meta task, or save it again with edgeseg")
    return checked


def open_session(target: str | Path | nn.Module, backend: str = "onnxruntime", meta: ModelMeta | None = None,
                 **options) -> Session:
    """``target``: an ONNX file (onnxruntime), a checkpoint or nn.Module (torch: ``device=`` "cpu"/"cuda",
    ``precision=`` "fp16" by autocast on CUDA, ``compile=True`` through torch.compile), an engine or an ONNX file
    (tensorrt: the ONNX is built at ``precision=`` through the engine cache)."""
    if backend == "onnxruntime":
        from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSession

        return OnnxRuntimeSession(target, **options)
    if backend == "torch":
        from edgeseg.runtime.torch_backend import TorchSession

        if isinstance(target, nn.Module):
            if meta is None:
                from edgeseg.export import default_meta

                meta = default_meta(target)
            return TorchSession(target, meta, **options)
        from edgeseg.models.checkpoint import load_model_file

        model, payload = load_model_file(target)  # edgeseg's own, or a torchvision Mask R-CNN state dict (as export)
        if meta is None and payload is None:
            from edgeseg.export import default_meta

            meta = default_meta(model)
        return TorchSession(model, meta or meta_from_checkpoint_dict(payload["config"], payload["meta"]), **options)
    if backend == "tensorrt":
        from edgeseg.runtime.tensorrt.session import TensorRTSession  # an engine, or an .onnx + precision= (cached)

        return TensorRTSession(target, **options)
    raise BackendError(f"unknown backend '{backend}'", f"use one of: {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "Session", "check_batch", "labels_from_outputs", "open_session", "predict", "preprocess"]
