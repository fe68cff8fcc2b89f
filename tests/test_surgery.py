import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeseg.export import surgery


def _qdq_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    inits = [numpy_helper.from_array(np.array(0.01, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.array([[3.0, 1.0]], np.float32), "w")]
    nodes = [helper.make_node("Mul", ["x", "w"], ["m"]),
             helper.make_node("QuantizeLinear", ["m", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    model.metadata_props.add(key="edgeseg.model", value='"m"')
    return model


def test_strip_output_qdq_keeps_float_logits_and_the_output_name():
    model = _qdq_model()
    x = np.array([[1.0, 2.0]], np.float32)
    clipped = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert clipped[0, 0] == np.float32(1.27)  # 3.0 clipped at 127 × 0.01: the tie-maker
    stripped = surgery.strip_output_qdq(model)
    onnx.checker.check_model(stripped)
    assert [n.op_type for n in stripped.graph.node] == ["Mul"]
    assert stripped.graph.output[0].name == "y"
    assert {p.key for p in stripped.metadata_props} == {"edgeseg.model"}
    out = ort.InferenceSession(stripped.SerializeToString()).run(None, {"x": x})[0]
    assert np.allclose(out, [[3.0, 2.0]])


def test_clean_folds_constants_and_renames_io():
    x = helper.make_tensor_value_info("in0", TensorProto.FLOAT, ["n", 2])
    y = helper.make_tensor_value_info("out0", TensorProto.FLOAT, ["n", 2])
    inits = [numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "a"),
             numpy_helper.from_array(np.array([3.0, 4.0], np.float32), "b")]
    nodes = [helper.make_node("Add", ["a", "b"], ["c"]),  # constant: folded away
             helper.make_node("Mul", ["in0", "c"], ["out0"]),
             helper.make_node("Neg", ["in0"], ["dead"])]  # unused: removed
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    cleaned = surgery.rename_io(surgery.clean(model), "input", ["logits"])
    assert [n.op_type for n in cleaned.graph.node] == ["Mul"]
    assert cleaned.graph.input[0].name == "input" and cleaned.graph.output[0].name == "logits"
    out = ort.InferenceSession(cleaned.SerializeToString()).run(None, {"input": np.ones((3, 2), np.float32)})[0]
    assert np.allclose(out, [[4.0, 6.0]] * 3)
