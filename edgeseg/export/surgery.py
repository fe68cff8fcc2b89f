"""Graph-surgery passes on ONNX models (onnx-graphsurgeon). Each pass takes and returns a ModelProto."""
from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs


def _to_proto(graph: gs.Graph, original: onnx.ModelProto) -> onnx.ModelProto:
    """Export ``graph`` keeping the original's IR version, opset imports (custom domains too),
    metadata and producer, which graphsurgeon would otherwise reset."""
    proto = gs.export_onnx(graph, do_type_check=True)
    proto.ir_version = min(original.ir_version, proto.ir_version)
    del proto.opset_import[:]
    proto.opset_import.extend(original.opset_import)
    del proto.metadata_props[:]
    proto.metadata_props.extend(original.metadata_props)
    proto.producer_name, proto.producer_version = original.producer_name, original.producer_version
    return proto


def clean(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants, drop dead nodes and unused initialisers, sort topologically."""
    graph = gs.import_onnx(model)
    # Folding inside Loop/If bodies silently does little unless subgraphs share the outer IR version.
    for sub in graph.subgraphs(recursive=True):
        sub.ir_version = graph.ir_version
    graph.fold_constants().cleanup(remove_unused_graph_inputs=False).toposort()
    return _to_proto(graph, model)


def rename_io(model: onnx.ModelProto, input_name: str, output_names: list[str]) -> onnx.ModelProto:
    """Give the graph's input and outputs stable names (the exporter may choose its own)."""
    graph = gs.import_onnx(model)
    if len(graph.inputs) != 1 or len(graph.outputs) != len(output_names):
        raise ValueError(f"expected 1 input and {len(output_names)} outputs, got {len(graph.inputs)} and {len(graph.outputs)}")
    graph.inputs[0].name = input_name
    for tensor, name in zip(graph.outputs, output_names):
        tensor.name = name
    return _to_proto(graph, model)


def strip_output_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop QuantizeLinear -> DequantizeLinear pairs that feed graph outputs.

    Quantizing the logits clips the largest scores to the calibrated range, so two classes can tie at
    the clip value and argmax flips; the last layer's output stays in float (as TensorRT keeps it).
    """
    graph = gs.import_onnx(model)
    for i, out in enumerate(graph.outputs):
        dq = out.inputs[0] if out.inputs else None
        if dq is None or dq.op != "DequantizeLinear":
            continue
        q = dq.inputs[0].inputs[0] if dq.inputs[0].inputs else None
        if q is None or q.op != "QuantizeLinear":
            continue
        source = q.inputs[0]
        dq.outputs.clear()
        source.name, out.name = out.name, source.name  # keep the public output name
        source.dtype, source.shape = out.dtype, out.shape
        graph.outputs[i] = source
    graph.cleanup().toposort()
    return _to_proto(graph, model)
