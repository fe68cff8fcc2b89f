"""``edgeseg check``: what TensorRT's ONNX parser would refuse, found on a machine without TensorRT or a GPU.

Every node is held against onnx-tensorrt's operator-support document for the target's TensorRT version
(transcribed into ``trt_support/tensorrt_<version>.json`` with its source): the op, the graph's opset, the
data types of its data inputs and outputs, and the restrictions the document states (constant inputs,
attribute values, unused outputs). Every ``edgeseg`` plugin node is held against the node spec (fields,
types, counts, ranges, version, namespace), and the plugin library's creators against the same nodes through
the TensorRT lean runtime's plugin registry. ``jetson`` adds Orin's facts: TensorRT 10.3 (JetPack 6), sm_87,
an aarch64 library. One ``Problem`` per defect, naming the node.
"""
from __future__ import annotations

import json
import platform
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from edgeseg.errors import EdgeSegError
from edgeseg.export.plugins import PLUGIN_SPEC, REQUIRED
from edgeseg.ops.export import PLUGIN_DOMAIN, PLUGIN_VERSION

TABLES = Path(__file__).with_name("trt_support")
JETSON = {"tensorrt": "10.3", "sm": 87, "machine": "aarch64"}  # Orin on JetPack 6
_BOOKKEEPING = {"plugin_version", "plugin_namespace"}

# ONNX element types by the names the documents use.
_DTYPE = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
          TensorProto.DOUBLE: "DOUBLE", TensorProto.INT32: "INT32", TensorProto.INT64: "INT64",
          TensorProto.INT8: "INT8", TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL", TensorProto.INT4: "INT4",
          TensorProto.FLOAT8E4M3FN: "FP8", TensorProto.FLOAT4E2M1: "FP4"}


def _dtype_name(elem: int) -> str:
    return _DTYPE.get(elem) or TensorProto.DataType.Name(elem)


@dataclass(frozen=True)
class Problem:
    node: str
    what: str

    def __str__(self) -> str:
        return f"{self.node}: {self.what}"


@dataclass
class Target:
    name: str             # "tensorrt" or "jetson"
    version: str          # the TensorRT version asked for
    table: dict           # the support table used (its "tensorrt" may be an older documented version)
    sm: int | None = None
    machine: str | None = None

    def describe(self) -> str:
        extra = "".join(f", {part}" for part in (self.sm and f"sm_{self.sm}", self.machine) if part)
        return f"{self.name} (TensorRT {self.version}{extra}; table: TensorRT {self.table['tensorrt']})"


@dataclass
class Report:
    target: Target
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    nodes: int = 0

    @property
    def passed(self) -> bool:
        return not self.problems


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def tables() -> dict[str, dict]:
    """The vendored support tables by TensorRT version."""
    return {t["tensorrt"]: t for t in (json.loads(p.read_text()) for p in sorted(TABLES.glob("tensorrt_*.json")))}


def parse_target(text: str) -> Target:
    """``tensorrt`` (the newest table), ``tensorrt=10.3``, ``jetson`` (Orin, JetPack 6) or ``jetson=10.3``; a
    ``tensorrt`` target may name its GPU, ``tensorrt=10.15@sm_89``, so the plugin library is checked for its code."""
    spec, _, gpu = text.partition("@")
    name, _, version = spec.partition("=")
    have = tables()
    known = ", ".join(sorted(have, key=_version_key))
    if name not in ("tensorrt", "jetson"):
        raise EdgeSegError(f"unknown check target '{text}'", "use --target tensorrt, tensorrt=VERSION or jetson")
    version = version or (JETSON["tensorrt"] if name == "jetson" else max(have, key=_version_key))
    try:
        key = _version_key(version)
    except ValueError:
        raise EdgeSegError(f"'{version}' is not a TensorRT version", f"write e.g. --target {name}=10.3") from None
    if key[0] != 10:
        # edgeseg's plugins are IPluginV3 (10.0+), built against 10.x headers; TensorRT 11 changed the registry layout
        raise EdgeSegError(f"no support table for TensorRT {version}", f"edgeseg targets TensorRT 10 (tables: {known})")
    older = [v for v in have if _version_key(v) <= key]
    if not older:
        raise EdgeSegError(f"no support table for TensorRT {version}", f"the oldest is {known.split(',')[0]}")
    table = have[max(older, key=_version_key)]  # a newer 10.x parses at least what the last documented one does
    sm, machine = (JETSON["sm"], JETSON["machine"]) if name == "jetson" else (None, None)
    if gpu:
        arch = re.fullmatch(r"sm_?(\d{2,3})", gpu)
        if arch is None or name == "jetson":
            raise EdgeSegError(f"'{text}': '@{gpu}' is not a GPU architecture for {name}",
                               "write e.g. --target tensorrt@sm_89 (jetson is Orin: sm_87)")
        sm = int(arch.group(1))
    return Target(name, version, table, sm, machine)


# --- the graph ----------------------------------------------------------------------------------------------

class _Graph:
    """Types, shapes and constants of one (sub)graph, with the enclosing graph's as fallback."""

    def __init__(self, graph: onnx.GraphProto, outer: "_Graph | None" = None):
        self.outer = outer
        self.types: dict[str, int] = {}
        self.shapes: dict[str, list] = {}
        self.params: dict[str, list] = {}  # dim_param of each dim ("" where it has a value)
        self.consts: dict[str, onnx.TensorProto | None] = {}
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            t = vi.type.tensor_type
            if t.elem_type:
                self.types[vi.name] = t.elem_type
            if t.HasField("shape"):
                self.shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
                self.params[vi.name] = [d.dim_param for d in t.shape.dim]
        for init in graph.initializer:
            self.types[init.name], self.shapes[init.name], self.consts[init.name] = init.data_type, list(init.dims), init
        for node in graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                self.consts[node.output[0]] = value
                if value is not None:
                    self.types[node.output[0]] = value.data_type

    def dtype(self, name: str) -> int | None:
        return self.types.get(name) or (self.outer.dtype(name) if self.outer else None)

    def shape(self, name: str) -> list | None:
        return self.shapes.get(name) if name in self.shapes else (self.outer.shape(name) if self.outer else None)

    def const(self, name: str):
        """(is constant, its tensor or None when not readable)."""
        if name in self.consts:
            return True, self.consts[name]
        return self.outer.const(name) if self.outer else (False, None)


def _node_name(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"{node.op_type}#{index}"


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _data_params(op: str, opset: int) -> tuple[set[str], bool]:
    """The schema's data type variable: the first input type variable that admits more than one type, whose
    tensors the document's "Supported Types" column is about; and whether the op has a schema at all."""
    try:
        schema = onnx.defs.get_schema(op, opset, "")
    except onnx.defs.SchemaError:
        return set(), False
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    for formal in schema.inputs:
        if len(allowed.get(formal.type_str, [])) > 1:
            return {formal.type_str}, True
    return set(), True


def _typed_tensors(node: onnx.NodeProto, opset: int) -> list[str]:
    """The node's tensors bound to its data type variable (Cast: its input and its output)."""
    params, ok = _data_params(node.op_type, opset)
    if not ok or not params:
        return []
    schema = onnx.defs.get_schema(node.op_type, opset, "")

    def bound(formals, actual):
        out = []
        for i, name in enumerate(actual):
            formal = formals[min(i, len(formals) - 1)] if formals else None  # the last formal may be variadic
            if name and formal is not None and formal.type_str in params:
                out.append(name)
        return out

    names = bound(schema.inputs, node.input) + bound(schema.outputs, node.output)
    if node.op_type in ("Cast", "CastLike") and node.output:
        names.append(node.output[0])
    return names


def _rule(rule: dict, node: onnx.NodeProto, g: _Graph, used: set[str]) -> str | None:
    """The problem ``node`` has with one of the table's restrictions, or None."""
    inputs = list(node.input)
    if "const_input" in rule:
        i = rule["const_input"]
        if i < len(inputs) and inputs[i] and not g.const(inputs[i])[0]:
            return f"{node.op_type} input {i} ('{inputs[i]}') must be a constant (an initializer)"
    elif "zero_input" in rule:
        i = rule["zero_input"]
        if i < len(inputs) and inputs[i]:
            is_const, t = g.const(inputs[i])
            if not is_const:
                return f"{node.op_type} zero point '{inputs[i]}' must be a constant zero"
            if t is not None and np.any(numpy_helper.to_array(t).astype(np.float64) != 0):
                return f"{node.op_type} zero point '{inputs[i]}' must be zero (TensorRT quantizes symmetrically)"
    elif "attr_in" in rule:
        value = _attr(node, rule["attr_in"], rule["default"])
        value = value.decode() if isinstance(value, bytes) else value
        if value not in rule["values"]:
            return f"{node.op_type} {rule['attr_in']}={value!r} (TensorRT takes {', '.join(map(str, rule['values']))})"
    elif "attr_eq" in rule:
        if _attr(node, rule["attr_eq"], rule["default"]) != rule["value"]:
            return f"{node.op_type} needs {rule['attr_eq']}={rule['value']}"
    elif "attr_ones" in rule:
        if any(v != 1 for v in _attr(node, rule["attr_ones"], []) or []):
            return f"{node.op_type} {rule['attr_ones']} must be all ones"
    elif "attr_absent" in rule:
        bad = [a.name for a in node.attribute if a.name in rule["attr_absent"]]
        if bad:
            return f"{node.op_type} attribute {bad[0]} is not supported"
    elif "unused_output" in rule:
        i = rule["unused_output"]
        if i < len(node.output) and node.output[i] and node.output[i] in used:
            return f"{node.op_type} output {i} ('{node.output[i]}') is not supported"
    elif "spatial_rank" in rule or "rank" in rule:
        shape = g.shape(inputs[0]) if inputs else None
        want = [r + 2 for r in rule["spatial_rank"]] if "spatial_rank" in rule else [rule["rank"]]
        if shape is not None and len(shape) not in want:
            return f"{node.op_type} on a rank-{len(shape)} input (TensorRT takes rank {' or '.join(map(str, want))})"
    elif "symmetric_pads" in rule:
        pads = _attr(node, "pads", []) or []
        half = len(pads) // 2
        if list(pads[:half]) != list(pads[half:]):
            return f"{node.op_type} pads {list(pads)} are not the same at both ends"
    elif "const_below" in rule:
        i = rule["const_below"]
        if i < len(inputs) and inputs[i]:
            is_const, t = g.const(inputs[i])
            if t is not None and np.any(numpy_helper.to_array(t) >= rule["limit"]):
                return f"{node.op_type} K must be below {rule['limit']}"
    return None


def _check_plugin(node: onnx.NodeProto, name: str) -> list[Problem]:
    """A plugin node against the node spec (plugins/spec/nodes.json, via the generated PLUGIN_SPEC)."""
    if node.op_type not in PLUGIN_SPEC:
        return [Problem(name, f"unknown plugin node {PLUGIN_DOMAIN}::{node.op_type} (known: {', '.join(PLUGIN_SPEC)})")]
    spec, out = PLUGIN_SPEC[node.op_type], []
    attrs = {a.name: a for a in node.attribute}
    version = attrs.get("plugin_version")
    if version is None or version.type != onnx.AttributeProto.STRING or version.s.decode() != PLUGIN_VERSION:
        value = None if version is None else onnx.helper.get_attribute_value(version)
        got = "none" if value is None else repr(value.decode() if isinstance(value, bytes) else value)
        out.append(Problem(name, f"{node.op_type} plugin_version {got}: the plugin has version '{PLUGIN_VERSION}' only"))
    namespace = attrs.get("plugin_namespace")
    if namespace is None or namespace.type != onnx.AttributeProto.STRING or namespace.s:
        out.append(Problem(name, f"{node.op_type} plugin_namespace must be '' (the creators register in the default namespace)"))
    for field_name, (kind, count, (lo, hi), default) in spec.items():
        a = attrs.get(field_name)
        if a is None:
            if default is REQUIRED:
                out.append(Problem(name, f"{node.op_type} lacks its required field '{field_name}'"))
            continue
        want = {("i", True): onnx.AttributeProto.INT, ("i", False): onnx.AttributeProto.INTS,
                ("f", True): onnx.AttributeProto.FLOAT, ("f", False): onnx.AttributeProto.FLOATS}[(kind, count == 1)]
        if a.type != want:
            out.append(Problem(name, f"{node.op_type} field '{field_name}' is {onnx.AttributeProto.AttributeType.Name(a.type)}, "
                                     f"the creator takes {onnx.AttributeProto.AttributeType.Name(want)}"))
            continue
        values = onnx.helper.get_attribute_value(a)
        values = values if isinstance(values, list) else [values]
        if count is not None and len(values) != count:
            out.append(Problem(name, f"{node.op_type} field '{field_name}' has {len(values)} value(s), the creator takes {count}"))
        elif not values or not all(lo <= v <= hi for v in values):
            out.append(Problem(name, f"{node.op_type} field '{field_name}' = {values} is outside [{lo}, {hi}]"))
    for extra in sorted(set(attrs) - set(spec) - _BOOKKEEPING):
        out.append(Problem(name, f"{node.op_type} has no field '{extra}'"))
    return out


def _check_graph(graph: onnx.GraphProto, opset: int, table: dict, report: Report, outer: _Graph | None = None,
                 where: str = "") -> None:
    g = _Graph(graph, outer)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for index, node in enumerate(graph.node):
        report.nodes += 1
        name = where + _node_name(node, index)
        for a in node.attribute:  # Loop / If / Scan bodies
            if a.type == onnx.AttributeProto.GRAPH:
                _check_graph(a.g, opset, table, report, g, f"{name}/")
        if node.domain == PLUGIN_DOMAIN:
            report.problems += _check_plugin(node, name)
            continue
        if node.domain not in ("", "ai.onnx"):
            report.problems.append(Problem(name, f"{node.domain}::{node.op_type} is not an ONNX operator nor an edgeseg plugin: "
                                                 f"TensorRT {table['tensorrt']}'s parser has no importer for it"))
            continue
        if node.op_type not in table["ops"]:
            report.problems.append(Problem(name, f"{node.op_type} is not in onnx-tensorrt's table for TensorRT {table['tensorrt']}"))
            continue
        types = table["ops"][node.op_type]
        if types is None:
            report.problems.append(Problem(name, f"TensorRT {table['tensorrt']}'s ONNX parser does not support {node.op_type}"))
            continue
        for tensor in _typed_tensors(node, opset):
            elem = g.dtype(tensor)
            if elem is None or elem == TensorProto.DOUBLE:  # unknown: not judged; DOUBLE: the parser casts it down
                continue
            if _dtype_name(elem) not in types:
                report.problems.append(Problem(name, f"{node.op_type} on {_dtype_name(elem)} tensor '{tensor}' "
                                                     f"(TensorRT {table['tensorrt']} takes {', '.join(types)})"))
                break
        if node.op_type in ("Cast", "CastLike") and node.input and node.output:
            # TensorRT (NvInferRuntimeBase.h, DataType::kUINT8): uint8 converts to and from FP32 / FP16 only
            pair = [g.dtype(node.input[0]), g.dtype(node.output[0])]
            if TensorProto.UINT8 in pair and None not in pair and not set(pair) <= {TensorProto.UINT8, TensorProto.FLOAT, TensorProto.FLOAT16}:
                report.problems.append(Problem(name, f"Cast {_dtype_name(pair[0])} -> {_dtype_name(pair[1])}: TensorRT converts "
                                                     "UINT8 to and from FP32/FP16 only"))
        for rule in table["rules"].get(node.op_type, []):
            what = _rule(rule, node, g, used)
            if what:
                report.problems.append(Problem(name, what))
        # TensorRT's rule for dynamic shapes: a convolution's input channels are a build-time constant
        if node.op_type in ("Conv", "ConvTranspose") and node.input:
            shape, params = g.shape(node.input[0]), g.params.get(node.input[0], [])
            # only a named dynamic dimension (a graph input's axis): ONNX shape inference gives up ("unk__N") where
            # TensorRT's own shape analysis still finds the channels (Resize/Slice sizes computed from shapes)
            named = len(params) > 1 and params[1] and not params[1].startswith("unk__")
            if shape is not None and len(shape) > 1 and shape[1] is None and named:
                report.problems.append(Problem(name, f"{node.op_type} input '{node.input[0]}' has a dynamic channel dimension "
                                                     "(TensorRT needs it fixed at build time)"))


_IO_TYPES = {"FP32", "FP16", "BF16", "INT32", "INT64", "INT8", "UINT8", "BOOL"}


def _check_io(graph: onnx.GraphProto, report: Report) -> None:
    inits = {i.name for i in graph.initializer}
    for kind, values in (("input", [v for v in graph.input if v.name not in inits]), ("output", graph.output)):
        for v in values:
            t = v.type.tensor_type
            label = f"graph {kind} '{v.name}'"
            if not v.type.HasField("tensor_type"):
                report.problems.append(Problem(label, "is not a tensor (TensorRT takes tensors only)"))
                continue
            if _dtype_name(t.elem_type) not in _IO_TYPES:
                report.problems.append(Problem(label, f"is {_dtype_name(t.elem_type)} (TensorRT network I/O: {', '.join(sorted(_IO_TYPES))})"))
            if kind == "input" and not t.HasField("shape"):
                report.problems.append(Problem(label, "has no rank (TensorRT needs every network input's rank)"))
            elif kind == "input" and any(d.HasField("dim_value") and d.dim_value <= 0 for d in t.shape.dim):
                report.problems.append(Problem(label, "has a zero-size dimension"))


# --- the plugin library ---------------------------------------------------------------------------------------

_MACHINES = {62: "x86_64", 183: "aarch64"}


def library_facts(path: Path) -> tuple[str, list[tuple[str, int]]]:
    """The library's CPU (ELF e_machine) and its CUDA images: ("sass" | "ptx", sm) from each fatbin entry header."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF":
        raise EdgeSegError(f"{path} is not a shared library (no ELF header)", "pass the plugin library built by scripts/build_plugins.sh")
    machine = _MACHINES.get(struct.unpack_from("<H", data, 18)[0], "unknown")
    images, magic, at = [], struct.pack("<I", 0xBA55ED50), 0
    while (at := data.find(magic, at)) >= 0:
        _version, header, size = struct.unpack_from("<HHQ", data, at + 4)
        entry, end = at + header, min(at + header + size, len(data))
        while entry + 32 <= end:  # entry header: kind, _, header size, payload size, ..., arch at byte 28
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            if kind in (1, 2) and entry_header:
                images.append(("ptx" if kind == 1 else "sass", arch))
            if not entry_header:
                break
            entry += entry_header + payload
        at += 4
    return machine, sorted(set(images))


_loaded: set[str] = set()


def library_creators(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """The creators ``path`` registers, loaded into the TensorRT lean runtime's plugin registry (no GPU needed):
    (name, version, namespace) -> field -> "i" / "f"."""
    try:
        import tensorrt_lean as trt
    except ImportError:
        raise EdgeSegError("the TensorRT lean runtime is not installed", "pip install tensorrt-lean-cu13 (the dev extra)") from None
    registry = trt.get_plugin_registry()
    key = str(Path(path).resolve())
    if key not in _loaded:
        if registry.load_library(key) is None:
            raise EdgeSegError(f"TensorRT's plugin registry could not load {path}", "rebuild it with scripts/build_plugins.sh")
        _loaded.add(key)
    kinds = {trt.PluginFieldType.INT32: "i", trt.PluginFieldType.FLOAT32: "f"}
    return {(c.name, c.plugin_version, c.plugin_namespace): {f.name: kinds.get(f.type, str(f.type)) for f in c.field_names}
            for c in registry.all_creators}


def check_creators(model: onnx.ModelProto, creators: dict, library: str) -> list[Problem]:
    """Every plugin node has a creator in ``creators`` by name, version and namespace, which lists its fields."""
    out = []
    for index, node in enumerate(model.graph.node):
        if node.domain != PLUGIN_DOMAIN:
            continue
        name = _node_name(node, index)  # plugin nodes in subgraphs are not ours to emit
        version, namespace = _attr(node, "plugin_version", b"1"), _attr(node, "plugin_namespace", b"")
        key = (node.op_type, version.decode() if isinstance(version, bytes) else str(version),
               namespace.decode() if isinstance(namespace, bytes) else str(namespace))
        fields = creators.get(key)
        if fields is None:
            out.append(Problem(name, f"{library} has no creator {key[0]} version {key[1]!r} namespace {key[2]!r}"))
            continue
        for a in node.attribute:
            if a.name in _BOOKKEEPING:
                continue
            kind = {onnx.AttributeProto.INT: "i", onnx.AttributeProto.INTS: "i",
                    onnx.AttributeProto.FLOAT: "f", onnx.AttributeProto.FLOATS: "f"}.get(a.type)
            if fields.get(a.name) != kind:
                out.append(Problem(name, f"the creator {key[0]} in {library} does not take field '{a.name}' as {kind}"))
    return out


def _check_library(model: onnx.ModelProto, target: Target, library: Path, report: Report, creators=None) -> None:
    label = f"plugin library {library.name}"
    if not library.is_file():
        report.problems.append(Problem(label, f"{library} is missing (the graph's plugin nodes need it; build it with scripts/build_plugins.sh)"))
        return
    machine, images = library_facts(library)
    shown = ", ".join(f"{k} sm_{a}" for k, a in images) or "no CUDA code"
    report.notes.append(f"{label}: {machine}, {shown}")
    if target.machine and machine != target.machine:
        report.problems.append(Problem(label, f"is built for {machine}, the target runs {target.machine} (build it on the device)"))
    if target.sm:
        # SASS runs on its exact architecture (minor versions aside); PTX is compiled by the driver for a newer one
        runs = any((k == "sass" and a // 10 == target.sm // 10 and a <= target.sm) or (k == "ptx" and a <= target.sm)
                   for k, a in images)
        if not runs:
            report.problems.append(Problem(label, f"has no code for sm_{target.sm} ({shown}); rebuild it with "
                                                  f"EDGESEG_CUDA_ARCHS={target.sm} scripts/build_plugins.sh"))
    if creators is None:
        if machine != platform.machine():
            report.notes.append(f"{label}: creators not read (a {machine} library cannot load on this {platform.machine()} machine)")
            return
        creators = library_creators(library)
    report.problems += check_creators(model, creators, library.name)


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(a.g)


def check_model(model: onnx.ModelProto | str | Path, target: Target | str = "tensorrt", library: Path | str | None = None,
                creators: dict | None = None) -> Report:
    """Every problem TensorRT would have with ``model`` on ``target``. ``library``: the plugin library to check
    the plugin nodes' creators in (None: no library check); ``creators``: its creators as ``library_creators``
    returns them (read from the library when None)."""
    if not isinstance(target, Target):
        target = parse_target(target)
    if not isinstance(model, onnx.ModelProto):
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception as e:  # protobuf raises several types on a file that is not ONNX
            raise EdgeSegError(f"{model} is not a readable ONNX model ({type(e).__name__})", "pass an .onnx file") from None
    table, report = target.table, Report(target)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # types from the exporter's value_info are still there
        report.notes.append("shape inference failed: dtypes of unannotated tensors not checked")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    lo, hi = table["opset"]
    if not lo <= opset <= hi:
        report.problems.append(Problem("graph", f"imports ONNX opset {opset}; TensorRT {table['tensorrt']} parses opsets {lo} to {hi}"))
    _check_io(model.graph, report)
    _check_graph(model.graph, opset, table, report)
    if library is not None and any(n.domain == PLUGIN_DOMAIN for n in _all_nodes(model.graph)):
        _check_library(model, target, Path(library), report, creators)
    return report


__all__ = ["Problem", "Report", "Target", "check_creators", "check_model", "library_creators", "library_facts",
           "parse_target", "tables"]
