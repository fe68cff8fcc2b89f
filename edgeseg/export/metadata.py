"""The self-describing ONNX contract: what a runtime needs to pre- and post-process a model without
its Python code, stored in the ONNX ``metadata_props`` (keys ``edgeseg.*``, JSON values) or, for a
foreign ONNX, in a sidecar ``<model>.onnx.json`` holding the same fields.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import onnx

from edgeseg.errors import OnnxFileError

PREFIX = "edgeseg."


@dataclass
class ModelMeta:
    model: str
    task: str = "semantic"
    class_names: list[str] = field(default_factory=list)
    in_channels: int = 3
    # Pixels are scaled to [0, 1] (8-bit images: /255), then (x - mean) / std per channel.
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    input_name: str = "input"
    input_layout: str = "NCHW"
    size_divisor: int = 32  # H and W must be multiples of this; the runtime pads and crops back
    outputs: dict[str, str] = field(default_factory=lambda: {"logits": "N×K×H×W class scores at input resolution"})
    logits_output: str = "logits"
    ignore_index: int = 255
    flavour: str = "portable"
    precision: str = "fp32"
    edgeseg_version: str = ""
    config: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_props(self) -> dict[str, str]:
        return {PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str) -> "ModelMeta":
        known = {f.name for f in fields(cls)}
        values = {}
        for k, v in props.items():
            if k.startswith(PREFIX) and k[len(PREFIX):] in known:
                try:
                    values[k[len(PREFIX):]] = json.loads(v)
                except json.JSONDecodeError:
                    raise OnnxFileError(f"{source}: metadata field {k} is not valid JSON", "re-export the model with edgeseg") from None
        if "model" not in values:
            raise OnnxFileError(f"{source} carries no edgeseg metadata",
                                f"export it with 'edgeseg export', or write a sidecar {source}.json (see README)")
        return cls(**values)


def write_metadata(model: onnx.ModelProto, meta: ModelMeta) -> None:
    keep = [p for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in meta.to_props().items():
        model.metadata_props.add(key=k, value=v)


def read_metadata(model: onnx.ModelProto, path: str | Path) -> ModelMeta:
    """Metadata from the model itself, else from the sidecar ``<path>.json``."""
    props = {p.key: p.value for p in model.metadata_props}
    if not any(k.startswith(PREFIX) for k in props):
        sidecar = Path(str(path) + ".json")
        if sidecar.is_file():
            try:
                data = json.loads(sidecar.read_text())
            except json.JSONDecodeError as e:
                raise OnnxFileError(f"sidecar {sidecar} is not valid JSON ({e.msg})", "fix the JSON") from None
            props = {PREFIX + k: json.dumps(v) for k, v in data.items()}
    return ModelMeta.from_props(props, str(path))


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
