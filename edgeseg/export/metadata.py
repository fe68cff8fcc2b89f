"""The self-describing ONNX contract: what a runtime needs to pre- and post-process a model without
its Python code, stored in the ONNX ``metadata_props`` (keys ``edgeseg.*``, JSON values) or, for a
foreign ONNX, in a sidecar ``<model>.onnx.json`` holding the same fields.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import onnx

from edgeseg.errors import EdgeSegError, OnnxFileError

PREFIX = "edgeseg."
MAX_FIELD_BYTES = 1 << 20  # one metadata value or a whole sidecar: JSON of at most 1 MiB
MAX_CLASSES = 1024
MAX_IN_CHANNELS = 64
TASKS = ("semantic", "instance", "panoptic")
PRECISIONS = ("fp32", "fp16", "int8")
LAYOUTS = ("NCHW", "NHWC")
CHANNEL_ORDERS = ("RGB", "BGR")
PIXEL_SCALES = (1 / 255, 1.0)
RESIZE_MODES = ("stretch", "letterbox")
OUTPUT_KINDS = ("softmax", "sigmoid_binary", "sigmoid_multilabel")
MAX_INPUT_SIDE = 8192
IO_FORMS = ("tensors", "frames")


@dataclass
class ModelMeta:
    model: str
    task: str = "semantic"
    class_names: list[str] = field(default_factory=list)
    in_channels: int = 3
    # Model input = (8-bit pixel * pixel_scale - mean) / std per channel, channels in channel_order.
    # (edgeseg.runtime.prepost applies every field from here to output_stride; README documents each.)
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    channel_order: str = "RGB"
    pixel_scale: float = 1 / 255
    input_name: str = "input"
    input_layout: str = "NCHW"  # NHWC: the input and the logits output are both channels-last
    size_divisor: int = 32  # dynamic size: H and W must be multiples of this; the runtime pads and crops back
    input_size: list[int] | None = None  # [H, W] of a fixed-size graph: the runtime resizes to it and back
    resize_mode: str = "stretch"  # fixed size: stretch to [H, W], or letterbox (keep aspect, pad bottom/right)
    outputs: dict[str, str] = field(default_factory=lambda: {"logits": "N×K×H×W class scores at input resolution"})
    logits_output: str = "logits"
    output_kind: str = "softmax"  # softmax: argmax over K; sigmoid_binary: 1 channel > threshold; sigmoid_multilabel
    threshold: float = 0.5  # the sigmoid kinds: a pixel is in a class where its probability exceeds this
    output_stride: int = 1  # logits at input size / stride, upsampled bilinearly to the input size
    ignore_index: int = 255
    max_detections: int = 0  # instance models: D, the fixed number of detection slots (0: not a detector)
    flavour: str = "portable"
    # tensors: the float contract (normalised N×C×H×W in, logits / full-size masks out; the oracle).
    # frames: a deploy graph (edgeseg.export.deploy): uint8 N×H×W×C frames in channel order frame_order, any size;
    # decisions out at the frame's size (labels; boxes + instance_map + mask_probs; panoptic ids + table + labels).
    io: str = "tensors"
    frame_order: str = "RGB"
    precision: str = "fp32"
    edgeseg_version: str = ""
    config: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def output_channels(self) -> int:
        """The logits output's channel count that ``class_names`` and ``output_kind`` imply."""
        return {"sigmoid_binary": 1, "sigmoid_multilabel": self.num_classes - 1}.get(self.output_kind, self.num_classes)

    def to_props(self) -> dict[str, str]:
        return {PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> "ModelMeta":
        known = {f.name for f in fields(cls)}
        values = {}
        for k, v in props.items():
            if k.startswith(PREFIX) and k[len(PREFIX):] in known:
                if len(v) > MAX_FIELD_BYTES:
                    raise OnnxFileError(f"{source}: metadata field {k} is {len(v)} bytes (limit {MAX_FIELD_BYTES})",
                                        "re-export the model with edgeseg")
                try:
                    values[k[len(PREFIX):]] = json.loads(v)
                except (ValueError, RecursionError):  # JSONDecodeError, over-long integers, deep nesting
                    raise OnnxFileError(f"{source}: metadata field {k} is not valid JSON", "re-export the model with edgeseg") from None
        if "model" not in values:
            raise OnnxFileError(f"{source} carries no edgeseg metadata",
                                f"export it with 'edgeseg export', or write a sidecar {source}.json (see README)")
        return cls.validated(values, source)

    @classmethod
    def validated(cls, values: dict, source: str, error: type[EdgeSegError] = OnnxFileError) -> "ModelMeta":
        """A ModelMeta from untrusted ``values`` (an ONNX file's metadata, a sidecar, a checkpoint, an engine's
        sidecar): every field checked by type, range and length; a refusal names the field and ``source``."""
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise error(f"{source}: unknown metadata field '{str(unknown[0])[:60]}'",
                        f"remove it; the fields are: {', '.join(f.name for f in fields(cls))}")
        meta = cls(**values)
        _check_meta(meta, source, error)
        return meta


def _check_meta(meta: ModelMeta, source: str, error: type[EdgeSegError]) -> None:
    def bad(name: str, what: str, fix: str = "") -> EdgeSegError:
        return error(f"{source}: metadata field '{name}' {what}", fix or "re-export the model with edgeseg, or fix the sidecar")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v) -> bool:
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

    def short_string(name: str, v, limit: int = 256) -> None:
        if not isinstance(v, str) or len(v) > limit:
            raise bad(name, f"must be a string of at most {limit} characters")

    short_string("model", meta.model)
    if meta.task not in TASKS:
        raise bad("task", f"must be one of {', '.join(TASKS)}")
    if not is_int(meta.in_channels) or not 1 <= meta.in_channels <= MAX_IN_CHANNELS:
        raise bad("in_channels", f"must be an integer in 1..{MAX_IN_CHANNELS}")
    names = meta.class_names
    if not isinstance(names, (list, tuple)) or not 1 <= len(names) <= MAX_CLASSES:
        raise bad("class_names", f"must be a list of 1..{MAX_CLASSES} class names")
    if not all(isinstance(n, str) and len(n) <= 256 for n in names):
        raise bad("class_names", "must hold strings of at most 256 characters")
    for name in ("mean", "std"):
        v = getattr(meta, name)
        if not isinstance(v, (list, tuple)) or len(v) != meta.in_channels or not all(is_number(x) for x in v):
            raise bad(name, f"must be a list of {meta.in_channels} numbers (one per input channel)")
    if not all(x > 0 for x in meta.std):
        raise bad("std", "must be positive")
    if meta.channel_order not in CHANNEL_ORDERS:
        raise bad("channel_order", f"must be one of {', '.join(CHANNEL_ORDERS)}")
    if meta.channel_order == "BGR" and meta.in_channels != 3:
        raise bad("channel_order", f"BGR needs 3 input channels, the model takes {meta.in_channels}")
    spelled = {"1/255": PIXEL_SCALES[0], "1": 1.0}  # as the README's sidecar table writes them
    if isinstance(meta.pixel_scale, str) and meta.pixel_scale.replace(" ", "") in spelled:
        meta.pixel_scale = spelled[meta.pixel_scale.replace(" ", "")]
    scale = [v for v in PIXEL_SCALES if is_number(meta.pixel_scale) and math.isclose(meta.pixel_scale, v, rel_tol=1e-4)]
    if not scale:
        raise bad("pixel_scale", "must be 1/255 (pixels to [0, 1] before mean/std) or 1 (pixels stay 0..255), "
                                 "as a number or the string \"1/255\"")
    meta.pixel_scale = scale[0]  # a sidecar's 0.0039216 is 1/255
    check_normalisation(meta, "float32", source, error)  # what preprocessing computes in
    short_string("input_name", meta.input_name)
    if meta.input_layout not in LAYOUTS:
        raise bad("input_layout", f"must be one of {', '.join(LAYOUTS)}")
    if not is_int(meta.size_divisor) or not 1 <= meta.size_divisor <= 1024:
        raise bad("size_divisor", "must be an integer in 1..1024")
    size = meta.input_size
    if size is not None and (not isinstance(size, (list, tuple)) or len(size) != 2
                             or not all(is_int(v) and 1 <= v <= MAX_INPUT_SIDE for v in size)):
        raise bad("input_size", f"must be null (any size) or [H, W], integers in 1..{MAX_INPUT_SIDE}")
    if meta.resize_mode not in RESIZE_MODES:
        raise bad("resize_mode", f"must be one of {', '.join(RESIZE_MODES)}")
    if meta.output_kind not in OUTPUT_KINDS:
        raise bad("output_kind", f"must be one of {', '.join(OUTPUT_KINDS)}")
    if not is_number(meta.threshold) or not 0 < meta.threshold < 1:
        raise bad("threshold", "must be a number between 0 and 1 (exclusive), compared with the sigmoid probability")
    if not is_int(meta.output_stride) or not 1 <= meta.output_stride <= 64:
        raise bad("output_stride", "must be an integer in 1..64")
    if meta.output_kind == "sigmoid_binary" and len(names) != 2:
        raise bad("class_names", f"must name 2 classes (background, foreground) for a sigmoid_binary output, got {len(names)}")
    if meta.output_kind == "sigmoid_multilabel" and len(names) < 2:
        raise bad("class_names", "must name background then one class per channel for a sigmoid_multilabel output")
    if meta.task != "semantic":  # instance and panoptic outputs have their own post-processing
        for name, default in (("input_size", None), ("output_kind", "softmax"), ("output_stride", 1), ("input_layout", "NCHW")):
            if getattr(meta, name) != default:
                raise bad(name, f"must be {json.dumps(default)} for a {meta.task} model (semantic models only)")
    outs = meta.outputs
    if (not isinstance(outs, dict) or not 1 <= len(outs) <= 64
            or not all(isinstance(k, str) and len(k) <= 256 and isinstance(v, str) for k, v in outs.items())):
        raise bad("outputs", "must map 1..64 output names to descriptions (strings)")
    short_string("logits_output", meta.logits_output)
    if not is_int(meta.max_detections) or not 0 <= meta.max_detections <= 1000:
        raise bad("max_detections", "must be an integer in 0..1000")
    if meta.task == "instance" and meta.max_detections < 1:
        raise bad("max_detections", "must be at least 1 for an instance model")
    if not is_int(meta.ignore_index):
        raise bad("ignore_index", "must be an integer")
    if meta.flavour not in ("portable", "tensorrt"):
        raise bad("flavour", "must be portable or tensorrt")
    if meta.io not in IO_FORMS:
        raise bad("io", f"must be one of {', '.join(IO_FORMS)}")
    if meta.frame_order not in CHANNEL_ORDERS:
        raise bad("frame_order", f"must be one of {', '.join(CHANNEL_ORDERS)}")
    if meta.frame_order == "BGR" and meta.in_channels != 3:
        raise bad("frame_order", f"BGR needs 3 input channels, the model takes {meta.in_channels}")
    if meta.precision not in PRECISIONS:
        raise bad("precision", f"must be one of {', '.join(PRECISIONS)}")
    short_string("edgeseg_version", meta.edgeseg_version, 64)
    if not isinstance(meta.config, dict):
        raise bad("config", "must be a JSON object")


def check_normalisation(meta: ModelMeta, dtype: str, source: str, error: type[EdgeSegError] = OnnxFileError) -> None:
    """Refuse mean/std under which a pixel's normalised value is not a finite, normal number in ``dtype`` (a std of
    1e-300 or a mean of 1e308 is finite in float64 but makes every input, and so every logit, inf or NaN)."""
    import numpy as np

    t = np.dtype(dtype).type
    with np.errstate(all="ignore"):
        mean, std = np.asarray(meta.mean, t), np.asarray(meta.std, t)
        top = t(255 * meta.pixel_scale)
        ends = np.concatenate([(t(0) - mean) / std, (top - mean) / std])
    if not (np.isfinite(mean).all() and (std >= np.finfo(t).tiny).all() and np.isfinite(ends).all()):
        raise error(f"{source}: metadata fields 'mean'/'std' {meta.mean}/{meta.std} overflow in the input's {dtype}",
                    "give the mean and std of the model's training (finite, std not tiny)")


TASK_OUTPUTS = {  # the outputs each task's post-processing reads, by I/O form (semantic tensors: logits_output)
    ("instance", "tensors"): ("boxes", "scores", "labels", "masks", "num_detections"),
    ("panoptic", "tensors"): ("panoptic", "segments", "semantic_logits"),
    ("semantic", "frames"): ("labels",),
    ("instance", "frames"): ("boxes", "scores", "labels", "num_detections", "instance_map"),
    ("panoptic", "frames"): ("panoptic", "segments", "semantic"),
}


def write_metadata(model: onnx.ModelProto, meta: ModelMeta) -> None:
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.to_props().items():
        model.metadata_props.add(key=k, value=v)


def read_metadata(model: onnx.ModelProto, path: str | Path) -> ModelMeta:
    """Metadata from the model itself, else from the sidecar ``<path>.json``, checked against the graph."""
    props = {p.key: p.value for p in model.metadata_props}
    if not any(k.startswith(PREFIX) for k in props):
        sidecar = Path(str(path) + ".json")
        if sidecar.is_file():
            return bind_to_graph(read_sidecar(sidecar), model, f"sidecar {sidecar}")
    return bind_to_graph(ModelMeta.from_props(props, str(path)), model, str(path))


def bind_to_graph(meta: ModelMeta, model: onnx.ModelProto, source: str) -> ModelMeta:
    """Name the graph's input and logits output where the metadata's names are not in the graph but the graph
    has only one (a minimal sidecar names neither), and refuse class names that cannot fit the output's static
    channel count (a dynamic one is checked at the first run, by edgeseg.runtime.prepost)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if meta.input_name not in inputs:
        if len(inputs) != 1:
            raise OnnxFileError(f"{source}: metadata field 'input_name' is '{meta.input_name[:60]}' but the graph's "
                                f"inputs are {', '.join(inputs)[:200]}", "name the image input in input_name")
        meta.input_name = inputs[0]
    graph_input = next(i for i in model.graph.input if i.name == meta.input_name)
    if graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16:
        check_normalisation(meta, "float16", source)
    missing = [n for n in TASK_OUTPUTS.get((meta.task, meta.io), ()) if n not in {o.name for o in model.graph.output}]
    if missing:
        raise OnnxFileError(f"{source}: the metadata says task '{meta.task}' but the graph has no output "
                            f"{', '.join(missing)}", "fix the metadata's task, or re-export the model with edgeseg")
    if meta.task != "semantic" or meta.io == "frames":  # a deploy graph's outputs are decisions, not scores
        return meta
    outputs = {o.name: o for o in model.graph.output}
    if meta.logits_output not in outputs:
        if len(outputs) != 1:
            raise OnnxFileError(f"{source}: metadata field 'logits_output' is '{meta.logits_output[:60]}' but the graph's "
                                f"outputs are {', '.join(outputs)[:200]}", "name the class-score output in logits_output")
        meta.logits_output = next(iter(outputs))
        meta.outputs = {meta.logits_output: meta.outputs.get(meta.logits_output, "class scores")}
    dims = outputs[meta.logits_output].type.tensor_type.shape.dim
    channel_axis = 3 if meta.input_layout == "NHWC" else 1
    if len(dims) == 4 and dims[channel_axis].HasField("dim_value"):
        check_output_channels(meta, dims[channel_axis].dim_value, source)
    return meta


def check_output_channels(meta: ModelMeta, channels: int, source: str) -> None:
    """Refuse class names that do not fit a logits output of ``channels`` channels, naming the fields."""
    if channels != meta.output_channels:
        raise OnnxFileError(
            f"{source}: metadata field 'class_names' lists {meta.num_classes} classes, which a {meta.output_kind} output "
            f"reads from {meta.output_channels} channel(s), but output '{meta.logits_output[:60]}' has {channels}",
            "list one class per channel for softmax; background + foreground for sigmoid_binary (1 channel); "
            "background + one per channel for sigmoid_multilabel; or set output_kind")


def read_sidecar(sidecar: str | Path) -> ModelMeta:
    """The metadata of a foreign ONNX from its ``<model>.onnx.json``; unknown keys are refused."""
    sidecar = Path(sidecar)
    size = sidecar.stat().st_size
    if size > MAX_FIELD_BYTES:
        raise OnnxFileError(f"sidecar {sidecar} is {size} bytes (limit {MAX_FIELD_BYTES})", "write only the metadata fields into it")
    try:
        data = json.loads(sidecar.read_bytes())
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, over-long integers, deep nesting
        raise OnnxFileError(f"sidecar {sidecar} is not valid JSON ({str(e).splitlines()[0][:80]})", "fix the JSON") from None
    if not isinstance(data, dict):
        raise OnnxFileError(f"sidecar {sidecar} is not a JSON object", 'write {"model": ..., "class_names": [...]}')
    if "model" not in data:
        raise OnnxFileError(f"sidecar {sidecar}: metadata field 'model' is missing", "name the model in the sidecar (see README)")
    return ModelMeta.validated(data, f"sidecar {sidecar}")


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, turning every way it can be broken into one clear OnnxFileError."""
    path = Path(path)
    if not path.is_file():
        raise OnnxFileError(f"ONNX file not found: {path}", "check the path, or create it with 'edgeseg export'")
    try:
        model = onnx.load(str(path), load_external_data=load_weights)
    except Exception as e:  # protobuf raises DecodeError, onnx raises assorted errors on foreign bytes
        raise OnnxFileError(f"{path} is not a readable ONNX model ({type(e).__name__})",
                            "the file is truncated or not ONNX: re-export it with 'edgeseg export'") from None
    if len(model.graph.node) == 0 or not model.graph.input or not model.graph.output:
        raise OnnxFileError(f"{path} holds no ONNX graph (no nodes, inputs or outputs)",
                            "the file is truncated or not ONNX: re-export it with 'edgeseg export'")
    return model
