"""torch -> ONNX: the dynamo exporter (legacy fallback), dynamic batch/H/W, graph surgery, checker,
and the edgeseg metadata contract. Writes atomically."""
from __future__ import annotations

import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import onnx
import torch
from torch import nn

import edgeseg
from edgeseg.errors import ExportError
from edgeseg.export import surgery
from edgeseg.export.deploy import OUTPUTS as DEPLOY_OUTPUTS, FramesGraph, frames_sample, uint8_input_through_cast
from edgeseg.export.metadata import CHANNEL_ORDERS, IO_FORMS, ModelMeta, load_onnx, read_metadata, write_metadata
from edgeseg.export.plugins import to_plugins
from edgeseg.models.detection import wrap_torchvision
from edgeseg.ops.export import FLAVOURS, export_flavour
from edgeseg.ops.nms import ONNX_TRANSLATIONS
from edgeseg.io import atomic_path

OPSET = 20  # ORT's CPU RoiAlign stops at 21 and DeformConv starts at 19


class _TupleOutputs(nn.Module):
    """Exports a module returning a tensor or a dict of tensors as a tuple in a fixed key order."""

    def __init__(self, model: nn.Module, keys: list[str] | None):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, x):
        out = self.model(x)
        if self.keys is None:
            return out
        return tuple(out[k] for k in self.keys)


def output_keys(model: nn.Module, sample: torch.Tensor) -> tuple[list[str] | None, dict[str, torch.Tensor]]:
    """The dict keys the model returns (None for a bare tensor, exported as "logits") and its outputs."""
    with torch.no_grad():
        out = model(sample)
    if isinstance(out, torch.Tensor):
        return None, {"logits": out}
    if isinstance(out, dict) and out and all(isinstance(v, torch.Tensor) for v in out.values()):
        return list(out.keys()), dict(out)
    raise ExportError(f"the model returns {type(out).__name__}", "return a tensor of logits or a dict of tensors")


def export_onnx(model: nn.Module, path: str | Path, *, meta: ModelMeta | None = None,
                sample: torch.Tensor | None = None, opset: int = OPSET, dynamic: bool = True,
                exporter: str = "dynamo", flavour: str = "portable", io: str = "tensors",
                frame_order: str = "RGB") -> ModelMeta:
    """Export ``model`` to ``path`` and return the metadata written into it.

    ``meta`` describes pre/post-processing (class names, mean/std...); defaults come from the model's
    ``edgeseg_config`` where it has one. ``exporter`` is ``dynamo`` (falls back to ``legacy`` with a
    warning where dynamo cannot trace the model) or ``legacy``. ``flavour``: ``portable`` (standard ONNX
    only) or ``tensorrt`` (edgeseg plugin nodes where the model uses edgeseg's or torchvision's custom ops;
    ONNX Runtime runs them through the custom-op library). ``io``: ``tensors`` (the float contract) or ``frames``
    (a deploy graph, ``edgeseg.export.deploy``: uint8 frames in ``frame_order`` in, decisions out; ``sample`` is
    then the float contract's, and the frames graph is traced on a uint8 frame).
    """
    if flavour not in FLAVOURS:
        raise ExportError(f"unknown flavour '{flavour}'", f"use one of: {', '.join(FLAVOURS)}")
    if io not in IO_FORMS:
        raise ExportError(f"unknown I/O form '{io}'", f"use one of: {', '.join(IO_FORMS)}")
    if frame_order not in CHANNEL_ORDERS:
        raise ExportError(f"unknown frame channel order '{frame_order}'", f"use one of: {', '.join(CHANNEL_ORDERS)}")
    model = wrap_torchvision(model)
    if sample is not None and sample.ndim != 4:
        raise ExportError(f"the sample has shape {tuple(sample.shape)}", "pass an N×C×H×W sample tensor")
    meta = meta or default_meta(model, in_channels=None if sample is None else sample.shape[1])
    if sample is None:
        side = max(4 * meta.size_divisor, 128)
        sample = torch.randn(1, meta.in_channels, side, side)
    elif sample.shape[1] != meta.in_channels:
        raise ExportError(f"the sample has {sample.shape[1]} channels but the metadata's in_channels is {meta.in_channels}",
                          "pass a sample with as many channels as the model takes, or set in_channels (and mean/std) in meta")
    was_training = model.training
    model.eval()
    try:
        keys, outputs = output_keys(model, sample)
        names = keys or ["logits"]
        meta.outputs = {k: meta.outputs.get(k, "model output") for k in names}
        if meta.logits_output not in names:
            meta.logits_output = "out" if "out" in names else names[0]
        if not meta.class_names:  # a foreign model: take the class count from its logits
            meta.class_names = [f"class_{i}" for i in range(outputs[meta.logits_output].shape[1])]
        spatial = (2, 3)
        if io == "frames":
            model = FramesGraph(model, meta, frame_order).eval()
            sample = frames_sample(meta, sample.shape[-1])
            names = list(DEPLOY_OUTPUTS[meta.task])
            keys, spatial = names, (1, 2)
            # logits_output keeps naming the float model's scores: the float twin (the parity reference) reads it
            meta.outputs, meta.io, meta.frame_order = dict(DEPLOY_OUTPUTS[meta.task]), io, frame_order
        wrapped = _TupleOutputs(model, keys).eval()
        with export_flavour(flavour):
            # Panoptic models merge image by image (the merge op takes one image): their batch is the sample's.
            batch_axis = dynamic and meta.task != "panoptic"
            proto = _run_exporter(wrapped, sample, meta.input_name, names, opset, dynamic, exporter, batch_axis, spatial)
    finally:
        model.train(was_training)
    proto = surgery.rename_io(surgery.clean(proto), meta.input_name, names)
    if io == "frames":
        proto = uint8_input_through_cast(proto)
    if flavour == "tensorrt":
        proto = to_plugins(proto)
    meta.flavour = flavour
    meta.edgeseg_version = edgeseg.__version__
    meta = ModelMeta.validated(asdict(meta), "export", ExportError)  # what a runtime will read back, checked now
    write_metadata(proto, meta)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported graph fails onnx.checker: {str(e).splitlines()[0]}", "report this as an edgeseg bug") from None
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))
    return meta


def _run_exporter(wrapped, sample, input_name, names, opset, dynamic, exporter, batch_axis=True,
                  spatial=(2, 3)) -> onnx.ModelProto:
    """``spatial``: the input's H and W axes (1, 2 for N×H×W×C frames)."""
    if exporter not in ("dynamo", "legacy"):
        raise ExportError(f"unknown exporter '{exporter}'", "use 'dynamo' or 'legacy'")
    axes = ([0] if batch_axis else []) + list(spatial)
    if exporter == "dynamo":
        auto = torch.export.Dim.AUTO
        shapes = {"x": {a: auto for a in axes}} if dynamic else None
        try:
            with warnings.catch_warnings(), _quiet_exporter():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(wrapped, (sample,), dynamo=True, opset_version=opset,
                                            input_names=[input_name], output_names=names,
                                            dynamic_shapes=shapes, verbose=False,
                                            custom_translation_table=ONNX_TRANSLATIONS)
            return program.model_proto
        except Exception as e:  # the dynamo exporter raises many error types; the legacy one may still work
            warnings.warn(f"dynamo export failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}); using the legacy exporter")
    import io

    axis_names = {0: "batch", spatial[0]: "height", spatial[1]: "width"}
    dynamic_axes = {input_name: {a: axis_names[a] for a in axes}} if dynamic else None
    if dynamic_axes and batch_axis:
        dynamic_axes.update({n: {0: "batch"} for n in names})
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (sample,), buf, dynamo=False, opset_version=opset, input_names=[input_name],
                              output_names=names, dynamic_axes=dynamic_axes, do_constant_folding=True)
    except Exception as e:
        raise ExportError(f"both ONNX exporters failed: {type(e).__name__}: {str(e).splitlines()[0][:300]}",
                          "make forward traceable (no Python-side state, tensor outputs only)") from None
    return onnx.load_from_string(buf.getvalue())


class _quiet_exporter:
    """The dynamo exporter logs its progress at INFO/WARNING; keep the user's console clean."""

    def __enter__(self):
        self.loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, lvl in zip(self.loggers, self.levels):
            lg.setLevel(lvl)


def default_meta(model: nn.Module, in_channels: int | None = None) -> ModelMeta:
    """The metadata of a model without any given: from its ``edgeseg_config``, else ImageNet RGB defaults;
    ``in_channels`` (a sample's channel count) overrides the config's."""
    cfg = dict(getattr(model, "edgeseg_config", {}) or {})
    num_classes = cfg.get("num_classes", 0)
    in_channels = in_channels or cfg.get("in_channels", 3)
    task = getattr(model, "task", "semantic")
    normalization = getattr(model, "normalization", None)
    if not normalization or len(normalization[0]) != in_channels:
        normalization = (([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) if in_channels == 3
                         else ([0.5] * in_channels, [0.25] * in_channels))
    mean, std = normalization
    if task == "panoptic" and getattr(model, "thing_classes", None) is not None:
        cfg["thing_classes"] = [int(c) for c in model.thing_classes]  # the model's own, where its config left the default
    outputs = {}
    if task == "instance":
        outputs = {"boxes": "N×D×4 boxes (x1, y1, x2, y2) in input pixels", "scores": "N×D", "labels": "N×D int64 (0: empty slot)",
                   "masks": "N×D×H×W mask probabilities at input resolution", "num_detections": "N int64"}
    return ModelMeta(
        model=cfg.get("name", type(model).__name__),
        task=task,
        max_detections=int(getattr(model, "max_detections", 0)),
        **({"outputs": outputs} if outputs else {}),
        class_names=(cfg.pop("class_names", None) or getattr(model, "class_names", None)
                     or [f"class_{i}" for i in range(num_classes)]),
        in_channels=in_channels,
        mean=mean,
        std=std,
        size_divisor=getattr(model, "size_divisor", 32),
        config=cfg,
    )


__all__ = ["OPSET", "ModelMeta", "export_onnx", "load_onnx", "read_metadata"]
