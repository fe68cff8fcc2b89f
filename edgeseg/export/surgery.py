"""Graph-surgery passes on ONNX models (onnx-graphsurgeon). Each pass takes and returns a ModelProto."""
from __future__ import annotations

import onnx
import onnx_graphsurgeon as gs


def _sync_subgraph_ir(graph: gs.Graph) -> None:
    # Folding inside Loop/If bodies silently does little unless subgraphs share the outer IR version.
    for sub in graph.subgraphs(recursive=True):
        sub.ir_version = graph.ir_version


def clean(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold constants, drop dead nodes and unused initialisers, sort topologically."""
    graph = gs.import_onnx(model)
    _sync_subgraph_ir(graph)
    graph.fold_constants().cleanup(remove_unused_graph_inputs=False).toposort()
    cleaned = gs.export_onnx(graph, do_type_check=True)
    cleaned.ir_version = min(model.ir_version, cleaned.ir_version)
    # Keep opset imports (incl. custom domains) and metadata of the original.
    del cleaned.opset_import[:]
    cleaned.opset_import.extend(model.opset_import)
    cleaned.metadata_props.extend(model.metadata_props)
    cleaned.producer_name, cleaned.producer_version = model.producer_name, model.producer_version
    return cleaned


def rename_io(model: onnx.ModelProto, input_name: str, output_names: list[str]) -> onnx.ModelProto:
    """Give the graph's input and outputs stable names (the exporter may choose its own)."""
    graph = gs.import_onnx(model)
    if len(graph.inputs) != 1 or len(graph.outputs) != len(output_names):
        raise ValueError(f"expected 1 input and {len(output_names)} outputs, got {len(graph.inputs)} and {len(graph.outputs)}")
    graph.inputs[0].name = input_name
    for tensor, name in zip(graph.outputs, output_names):
        tensor.name = name
    renamed = gs.export_onnx(graph)
    renamed.ir_version = model.ir_version
    del renamed.opset_import[:]
    renamed.opset_import.extend(model.opset_import)
    renamed.metadata_props.extend(model.metadata_props)
    return renamed


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
    stripped = gs.export_onnx(graph)
    stripped.ir_version = model.ir_version
    del stripped.opset_import[:]
    stripped.opset_import.extend(model.opset_import)
    stripped.metadata_props.extend(model.metadata_props)
    return stripped
