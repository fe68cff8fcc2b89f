"""A Triton Inference Server model repository from an edgeseg ONNX (ONNX Runtime backend) or TensorRT engine.

Layout written (each file atomically)::

    REPO/NAME/config.pbtxt        platform, max_batch_size, inputs/outputs (names, dtypes, dims), dynamic
                                  batching, instance groups
    REPO/NAME/edgeseg.json        the edgeseg metadata (pre/post-processing; Triton ignores the file)
    REPO/NAME/VERSION/model.onnx  or model.plan

Names, dtypes and dims come from the ONNX graph and its metadata; for an engine from its sidecar (``io``,
recorded by ``edgeseg build``: TensorRT keeps the ONNX graph's I/O types). With ``max_batch_size > 0``
Triton's dims leave the batch axis out. A graph whose batch is fixed (panoptic graphs merge one image at a
time) gets ``max_batch_size: 0`` and full dims, without dynamic batching.

An engine with edgeseg plugin nodes needs ``libedgeseg_trt.so`` in the server: start tritonserver with
``LD_PRELOAD`` of that library (or ``--backend-config=tensorrt,plugins=...``).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

from edgeseg.errors import EdgeSegError
from edgeseg.export.metadata import ModelMeta, load_onnx, read_metadata
from edgeseg.io import atomic_path, write_text_atomic
from edgeseg.runtime.tensorrt.build import graph_io
from edgeseg.runtime.tensorrt.session import ENGINE_SUFFIXES, read_engine_sidecar

# numpy dtype name -> Triton DataType
TRITON_DTYPES = {"bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32",
                 "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32",
                 "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64"}
KINDS = {"gpu": "KIND_GPU", "cpu": "KIND_CPU"}
DEFAULT_MAX_BATCH = 8
_NAME = re.compile(r"^(?!\.)[A-Za-z0-9_.-]{1,128}$")  # a plain folder name: never "." or "..", never hidden


class DeployError(EdgeSegError):
    """A model that cannot be written as asked into a serving repository."""


def _model_io(model: Path) -> tuple[ModelMeta, dict[str, dict], str, str]:
    """(metadata, I/O table, Triton platform, file name in the version folder)."""
    if model.suffix.lower() == ".onnx":
        proto = load_onnx(model, load_weights=False)
        return read_metadata(proto, model), graph_io(proto), "onnxruntime_onnx", "model.onnx"
    if model.suffix.lower() in ENGINE_SUFFIXES:
        sidecar = Path(str(model) + ".json")
        if not sidecar.is_file():
            raise DeployError(f"{model} has no {sidecar.name} beside it", "build engines with 'edgeseg build'")
        info = read_engine_sidecar(sidecar)
        fields = set(ModelMeta.__dataclass_fields__)
        meta = ModelMeta.validated({k: v for k, v in info.items() if k in fields}, f"engine sidecar {sidecar}", DeployError)
        io = info.get("bindings")  # the engine's input/output table ("io" is the metadata's I/O form)
        if not isinstance(io, dict) or not io:
            raise DeployError(f"{sidecar} records no input/output table (an engine from an older edgeseg)",
                              "rebuild the engine with 'edgeseg build'")
        return meta, io, "tensorrt_plan", "model.plan"
    raise DeployError(f"cannot tell what {model} is from its suffix", "pass an .onnx or an engine (.engine/.plan)")


def _tensor(name: str, entry, batched: bool) -> str:
    if not isinstance(entry, dict) or not isinstance(entry.get("dims"), list) or \
            not all(isinstance(d, int) and -1 <= d <= 1 << 20 for d in entry["dims"]) or len(entry["dims"]) > 8:
        raise DeployError(f"the I/O table's entry for '{name[:80]}' is malformed", "rebuild the engine with 'edgeseg build'")
    dtype = TRITON_DTYPES.get(str(entry.get("dtype")))
    if dtype is None:
        raise DeployError(f"tensor '{name}' has dtype {entry.get('dtype')!r}, which Triton configs do not take",
                          "export the model with float, integer or bool inputs and outputs")
    dims = entry["dims"][1:] if batched else entry["dims"]
    # Triton wants dims on every tensor: a per-image scalar (num_detections, N) is [1] reshaped to [] in the model
    reshape = "\n    reshape: { shape: [ ] }" if not dims else ""
    return (f'  {{\n    name: {json.dumps(name)}\n    data_type: {dtype}\n    dims: [ {", ".join(str(d) for d in dims or [1])} ]'
            f'{reshape}\n  }}')


def triton_config(name: str, meta: ModelMeta, io: dict[str, dict], platform: str, max_batch_size: int | None = None,
                  instances: int = 1, kind: str = "gpu", dynamic_batching: bool = True, max_queue_delay_us: int = 100,
                  engine_max_batch: int | None = None) -> str:
    """The text of config.pbtxt (protobuf text format of Triton's ModelConfig)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DeployError(f"model name {name[:80]!r} is not 1-128 letters, digits, '_', '.' or '-' (not starting with '.')",
                          "pass --name with a plain name")
    if kind not in KINDS:
        raise DeployError(f"instance kind '{kind}'", f"use one of: {', '.join(KINDS)}")
    if platform == "tensorrt_plan" and kind != "gpu":
        raise DeployError("a TensorRT plan runs on the GPU only", "use --kind gpu")
    if not 1 <= instances <= 64:
        raise DeployError(f"{instances} instances", "use 1..64")
    inputs = {n: e for n, e in io.items() if isinstance(e, dict) and e.get("kind") == "input"}
    outputs = {n: e for n, e in io.items() if isinstance(e, dict) and e.get("kind") == "output"}
    if list(inputs) != [meta.input_name]:
        raise DeployError(f"the model's inputs are {list(inputs)}, its metadata says '{meta.input_name}'", "re-export it with edgeseg")
    batch_dims = [e["dims"][0] if e.get("dims") else None for e in (*inputs.values(), *outputs.values())]
    dynamic_batch = all(d == -1 for d in batch_dims)
    if max_batch_size is None:
        max_batch_size = (engine_max_batch or DEFAULT_MAX_BATCH) if dynamic_batch else 0
    if max_batch_size < 0 or max_batch_size > 1024:
        raise DeployError(f"max batch size {max_batch_size}", "use 0..1024")
    if max_batch_size > 0 and not dynamic_batch:
        raise DeployError("this graph's batch axis is fixed (panoptic graphs merge one image at a time)",
                          "use --max-batch-size 0")
    if engine_max_batch is not None and max_batch_size > engine_max_batch:
        raise DeployError(f"max batch size {max_batch_size} is over the engine profile's {engine_max_batch}",
                          f"use --max-batch-size {engine_max_batch} or rebuild with a larger --shapes batch")
    batched = max_batch_size > 0
    lines = [f"name: {json.dumps(name)}", f"platform: {json.dumps(platform)}", f"max_batch_size: {max_batch_size}",
             "input [", ",\n".join(_tensor(n, e, batched) for n, e in inputs.items()), "]",
             "output [", ",\n".join(_tensor(n, e, batched) for n, e in outputs.items()), "]"]
    if batched and dynamic_batching:
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {int(max_queue_delay_us)}\n}}")
    lines.append(f"instance_group [\n  {{\n    kind: {KINDS[kind]}\n    count: {instances}\n  }}\n]")
    return "\n".join(lines) + "\n"


def _engine_max_batch(model: Path) -> int | None:
    if model.suffix.lower() not in ENGINE_SUFFIXES:
        return None
    shapes = read_engine_sidecar(Path(str(model) + ".json")).get("shapes")
    try:
        return int(shapes[0]["max"][0])
    except (TypeError, KeyError, IndexError, ValueError):
        return None


def write_triton_repository(model: str | Path, repo: str | Path, name: str | None = None, version: int = 1,
                            max_batch_size: int | None = None, instances: int = 1, kind: str = "gpu",
                            dynamic_batching: bool = True, max_queue_delay_us: int = 100) -> Path:
    """Write ``repo/name`` for ``model`` (an edgeseg .onnx or engine); returns the model folder."""
    model = Path(model)
    if not model.is_file():
        raise DeployError(f"not found: {model}", "pass an edgeseg .onnx or an engine from 'edgeseg build'")
    if not 1 <= version <= 1 << 20:
        raise DeployError(f"version {version}", "use a positive integer")
    meta, io, platform, filename = _model_io(model)
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", model.stem).lstrip(".")[:128] or "model"  # the file's name, made plain
    config = triton_config(name, meta, io, platform, max_batch_size, instances, kind, dynamic_batching,
                           max_queue_delay_us, _engine_max_batch(model))
    folder = Path(repo) / name
    with atomic_path(folder / str(version) / filename) as tmp:
        tmp.write_bytes(model.read_bytes())
    write_text_atomic(folder / "edgeseg.json", json.dumps(asdict(meta), indent=2))
    write_text_atomic(folder / "config.pbtxt", config)
    return folder
