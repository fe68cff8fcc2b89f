"""TensorRT Q/DQ placement (edgeseg.quant.tensorrt, by NVIDIA ModelOpt's ONNX PTQ): every Conv input and weight
quantized, residual Adds quantized on their non-conv branch (so TensorRT fuses the Add into the conv), biases FP32,
the TensorRT parser check clean; one ResNet-18 FCN export shared by the tests (< 60 s)."""
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from edgeseg.errors import EdgeSegError
from edgeseg.export.check import check_model
from edgeseg.export.metadata import read_metadata
from edgeseg.models import create
from edgeseg.quant import quantize_int8
from edgeseg.runtime import open_session

from edgeseg.quant.tensorrt import _postprocessing_nodes, placement_problems


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """fcn32s_resnet18 (8 residual Adds, 4 of them after a downsampling conv) exported FP32 and placed for TensorRT."""
    from edgeseg.export import export_onnx
    from edgeseg.parity import random_batches

    pytest.importorskip("modelopt.onnx.quantization", reason="TensorRT placement uses nvidia-modelopt (scripts/setup.sh)")
    d = tmp_path_factory.mktemp("trt_placement")
    torch.manual_seed(0)
    model = create("fcn32s_resnet18", num_classes=3).eval()
    meta = export_onnx(model, d / "fp32.onnx", sample=torch.randn(1, 3, 64, 64), exporter="legacy")
    calibration = [b for b, _ in random_batches(meta, [(64, 64)] * 2)]
    quantize_int8(d / "fp32.onnx", d / "int8.onnx", calibration, target="tensorrt")
    return d, onnx.load(str(d / "int8.onnx")), calibration


def _producers(proto):
    return {o: n for n in proto.graph.node for o in n.output}


def test_every_conv_input_and_weight_is_quantized_and_biases_stay_fp32(placed):
    _, proto, _ = placed
    producer, inits = _producers(proto), {t.name: t for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 21
    for conv in convs:
        data, weight, bias = conv.input
        assert producer[data].op_type == "DequantizeLinear", conv.name
        dq = producer[weight]
        assert dq.op_type == "DequantizeLinear" and inits[dq.input[0]].data_type == TensorProto.INT8, conv.name
        scale = onnx.numpy_helper.to_array(inits[dq.input[1]])
        assert scale.shape == (inits[dq.input[0]].dims[0],), conv.name  # per-channel weights
        assert bias in inits and inits[bias].data_type == TensorProto.FLOAT, conv.name  # not an INT32 DequantizeLinear
    for n in proto.graph.node:  # symmetric INT8 everywhere: TensorRT takes zero points of 0 only
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and len(n.input) > 2:
            assert not onnx.numpy_helper.to_array(inits[n.input[2]]).any(), n.name
    # the only compute layer left in float is the output layer (ModelOpt keeps it so; it writes the logits)
    assert placement_problems(proto) == {"float_layers": ["/model/up_final/ConvTranspose"], "int32_dequantize": [],
                                         "unfused_adds": []}


def test_residual_adds_are_quantized_as_tensorrt_fuses_them(placed):
    """Conv output straight into the Add (TensorRT fuses the Add into that conv), the other branch through Q/DQ."""
    _, proto, _ = placed
    producer = _producers(proto)
    adds = [n for n in proto.graph.node if n.op_type == "Add"]
    assert len(adds) == 8
    for add in adds:
        assert sorted(producer[i].op_type for i in add.input) == ["Conv", "DequantizeLinear"], add.name


def test_the_placed_graph_passes_the_tensorrt_check_and_keeps_the_decision(placed):
    d, proto, calibration = placed
    for target in ("tensorrt", "jetson"):
        report = check_model(proto, target)
        assert report.passed, "\n".join(map(str, report.problems))
    meta = read_metadata(proto, "int8.onnx")
    assert meta.precision == "int8" and meta.config["placement"] == "tensorrt" and meta.config["weight_bits"] == 8
    assert meta.config["quantizer"].startswith("nvidia-modelopt") and meta.config["check"]["passed"]
    fp32, int8 = open_session(d / "fp32.onnx"), open_session(d / "int8.onnx")
    agree = np.mean([(fp32.run(b)["logits"].argmax(1) == int8.run(b)["logits"].argmax(1)).mean() for b in calibration])
    assert agree > 0.95, agree


def test_unplaceable_requests_are_refused_in_one_line(placed):
    d, _, calibration = placed
    with pytest.raises(EdgeSegError, match="percentile.*not available for the tensorrt target"):
        quantize_int8(d / "fp32.onnx", d / "x.onnx", calibration, method="percentile", target="tensorrt")
    with pytest.raises(EdgeSegError, match="unknown quantization target 'openvino'"):
        quantize_int8(d / "fp32.onnx", d / "x.onnx", calibration, target="openvino")
    with pytest.raises(EdgeSegError, match="already int8"):
        quantize_int8(d / "int8.onnx", d / "x.onnx", calibration, target="tensorrt")
    assert not (d / "x.onnx").exists()


def test_instance_postprocessing_is_left_out_of_the_placement():
    """Network convolutions, GEMMs and residual Adds are placed; box decoding (Mul/Add on non-conv tensors), NMS and
    top-k are excluded from ModelOpt's placement by name."""
    f = TensorProto.FLOAT
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Add", ["c", "x"], ["r"], name="residual"),
             helper.make_node("Gemm", ["r2", "g"], ["deltas"], name="box_head"),
             helper.make_node("Reshape", ["r", "shape"], ["r2"], name="flatten"),
             helper.make_node("Mul", ["deltas", "wh"], ["scaled"], name="decode_scale"),
             helper.make_node("Add", ["scaled", "anchors"], ["boxes"], name="decode_shift"),
             helper.make_node("NonMaxSuppression", ["boxes3", "scores"], ["keep"], name="nms")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", f, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("keep", TensorProto.INT64, None)])
    assert _postprocessing_nodes(helper.make_model(graph)) == ["flatten", "decode_scale", "decode_shift", "nms"]
