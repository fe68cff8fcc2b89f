"""FP16 by islands: the network's compute and data movement run in float16, everything else stays as
exported.

Islands start at convolutions, GEMMs and batch norms and grow forward through ops in ``FP16_OPS`` whose
"T" inputs (those the op's ONNX schema types like its data, never Resize's roi/scales or Pad's pads) are
all FP16 network data or constants. Their T outputs become FP16. A Cast is inserted, once per tensor,
wherever an FP32 value enters an FP16 node or an FP16 value reaches a node outside the islands or a graph
output; initialisers used only inside islands are stored in FP16 (half the file). So graph inputs and
outputs keep their types, and post-processing that must stay FP32 (box decoding, NMS, RoIAlign, top-k,
index arithmetic, custom ops) does, whatever the graph.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# The ops that may run in FP16 (network compute and data movement). Which of a node's inputs and outputs
# turn FP16 comes from its ONNX schema at the graph's opset (``_t_inputs``), not from a list per op.
FP16_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization",
    "Add", "Sub", "Mul", "Div", "Pow", "PRelu", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "HardSigmoid",
    "HardSwish", "Softmax", "Clip", "Erf", "Sqrt", "Neg", "Abs", "Exp", "Gelu", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
    "Slice", "Identity", "DepthToSpace", "SpaceToDepth", "Expand", "Concat", "Pad", "Resize", "Upsample",
})
_HEAVY = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"})


def default_opset(model: onnx.ModelProto) -> int:
    """The graph's version of the default (ai.onnx) domain."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _t_inputs(node: onnx.NodeProto, opset: int) -> list[int]:
    """Indices of the inputs typed by the same type variable as the data (input 0), the ones that must
    turn FP16 with it. Operands of another type keep theirs: Resize's roi and scales, Upsample's scales,
    Pad's pads, Slice's starts, BatchNormalization's statistics (T1/T2 at opset 15+). Empty where the
    schema does not allow FP16 data."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:  # the op is newer than the graph's opset: leave the node as it is
        return []
    formal = schema.inputs
    data = formal[0].type_str
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    if "tensor(float16)" not in allowed.get(data, ()):
        return []
    last = formal[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    return [i for i, name in enumerate(node.input)
            if name and (i < len(formal) or last) and formal[min(i, len(formal) - 1)].type_str == data]


def _t_outputs(node: onnx.NodeProto, opset: int) -> list[int]:
    """Indices of the outputs typed like the data (MaxPool's Y, not its Indices)."""
    schema = onnx.defs.get_schema(node.op_type, opset, "")
    return [i for i, o in enumerate(schema.outputs) if i < len(node.output) and o.type_str == schema.inputs[0].type_str]


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` (FP32, inference shapes available) with its network in FP16."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    opset = default_opset(model)
    dtype: dict[str, int] = {}
    for v in list(graph.input) + list(graph.value_info) + list(graph.output):
        dtype[v.name] = v.type.tensor_type.elem_type
    inits = {t.name: t for t in graph.initializer}
    for t in graph.initializer:
        dtype[t.name] = t.data_type
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            dtype[n.output[0]] = n.attribute[0].t.data_type

    # Constants FP16 cannot hold (finite but beyond ±65504, e.g. "minus a large number" fills) keep their
    # readers in FP32: cast, they would become ±inf and inf·0 = NaN.
    values = {name: numpy_helper.to_array(t) for name, t in inits.items() if t.data_type == TensorProto.FLOAT}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and dtype.get(n.output[0]) == TensorProto.FLOAT})
    too_big = {name for name, v in values.items() if v.size and (np.abs(v[np.isfinite(v)]) > 65504).any()}
    # Tensors read inside If/Loop bodies keep their types: their producers stay FP32.
    inner = {name for n in graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH
             for m in a.g.node for name in m.input}
    # Islands grow forward from the heavy ops: an elementwise or data-movement node joins only when every
    # float operand is FP16 network data or a constant. Arithmetic mixing network outputs with FP32 post-
    # processing values (box decoding, pixel coordinates of mask pasting) so stays FP32, where FP16's 11-bit
    # mantissa would move boxes by pixels.
    constants = set(inits) | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    t_inputs: dict[int, list[int]] = {}  # FP16 nodes (by position) -> their T inputs
    fp16_tensors: set[str] = set()
    for k, n in enumerate(graph.node):
        if n.domain not in ("", "ai.onnx") or n.op_type not in FP16_OPS or inner & set(n.output):
            continue
        idx = _t_inputs(n, opset)
        ins = [n.input[i] for i in idx]
        if not ins or not all(dtype.get(t) == TensorProto.FLOAT and t not in too_big for t in ins):
            continue
        if n.op_type in _HEAVY or (any(t in fp16_tensors for t in ins) and all(t in fp16_tensors or t in constants for t in ins)):
            t_inputs[k] = idx
            fp16_tensors.update(n.output[j] for j in _t_outputs(n, opset) if n.output[j])

    consumers: dict[str, list[tuple[int, int]]] = {}
    for k, n in enumerate(graph.node):
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((k, i))
    outputs = {o.name for o in graph.output}

    new_nodes: list[onnx.NodeProto] = []
    casts: dict[tuple[str, int], str] = {}

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"{casts[key]}_cast"))
        return casts[key]

    # Initialisers read only as T inputs of FP16 nodes are stored in FP16; others stay and are cast.
    half_only = {name for name, t in inits.items() if t.data_type == TensorProto.FLOAT and consumers.get(name)
                 and all(i in t_inputs.get(k, ()) for k, i in consumers[name])}
    for name in half_only:
        t = inits[name]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), name))

    # Graph outputs produced in FP16: the producer writes a renamed tensor, a Cast restores the public name.
    renamed = {o: f"{o}__fp16" for o in fp16_tensors & outputs}
    fp16_tensors = {renamed.get(o, o) for o in fp16_tensors}
    for k, n in enumerate(graph.node):
        for j, o in enumerate(n.output):
            if o in renamed:
                n.output[j] = renamed[o]
        for i, name in enumerate(n.input):
            if name in renamed:
                n.input[i] = renamed[name]
        if k in t_inputs:
            for i in t_inputs[k]:
                name = n.input[i]
                if name not in fp16_tensors and name not in half_only:
                    n.input[i] = cast(name, TensorProto.FLOAT16)
        else:
            for i, name in enumerate(n.input):
                if name in fp16_tensors:
                    n.input[i] = cast(name, TensorProto.FLOAT)
        new_nodes.append(n)
    for public, produced in renamed.items():
        new_nodes.append(helper.make_node("Cast", [produced], [public], to=TensorProto.FLOAT, name=f"{public}_cast"))

    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(graph.initializer)
    del out.graph.value_info[:]  # stale types; the cleanup pass re-infers what it needs
    return out


__all__ = ["FP16_OPS", "to_fp16"]
