import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeseg.data import get_dataset
from edgeseg.errors import BackendError, EdgeSegError, InputError
from edgeseg.export import export_onnx
from edgeseg.models import create
from edgeseg.parity import compare, random_batches
from edgeseg.quant import convert_fp16, quantize_int8
from edgeseg.runtime import labels_from_outputs, open_session, preprocess


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = create("fcn8s_resnet18", num_classes=4, in_channels=3).eval()
    path = tmp_path_factory.mktemp("q") / "m.onnx"
    meta = export_onnx(model, path)
    return model, meta, path


def _calibration(meta, n=4):
    ds = get_dataset("synthetic", "train", num_images=n, size=(128, 128), num_classes=4)
    return [preprocess(ds.raw(i)[0], meta)[0] for i in range(n)]


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_is_symmetric_per_channel_qdq(fp32_model, tmp_path, method):
    model, meta, path = fp32_model
    out = tmp_path / f"int8_{method}.onnx"
    qmeta = quantize_int8(path, out, _calibration(meta), method)
    assert qmeta.precision == "int8" and qmeta.config["calibration"] == method
    proto = onnx.load(str(out))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
    zero_points = [inits[n.input[2]] for n in proto.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                   and len(n.input) > 2 and n.input[2] in inits]
    # TensorRT: symmetric INT8 activations and weights (biases are INT32), every zero point 0
    assert zero_points and all((z == 0).all() and z.dtype in (np.int8, np.int32) for z in zero_points)
    assert sum(z.dtype == np.int8 for z in zero_points) > 10
    per_channel = [inits[n.input[1]] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[1] in inits
                   and inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1]
    assert per_channel, "weights must have per-channel scales"
    report = compare(open_session(model, "torch", meta=meta), open_session(out), random_batches(meta, [(128, 128)]))
    assert report.max_abs > 0  # really quantized


def test_fp16_keeps_fp32_io_and_passes_its_tolerance(fp32_model, tmp_path):
    model, meta, path = fp32_model
    convert_fp16(path, tmp_path / "h.onnx")
    proto = onnx.load(str(tmp_path / "h.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    s = open_session(tmp_path / "h.onnx")
    assert s.precision == "fp16"
    report = compare(open_session(model, "torch", meta=meta), s, random_batches(meta, [(128, 128), (96, 160)]))
    assert report.passed, report.summary()
    with pytest.raises(EdgeSegError, match="already fp16"):
        convert_fp16(tmp_path / "h.onnx", tmp_path / "hh.onnx")


def test_session_refuses_wrong_input(fp32_model):
    _, meta, path = fp32_model
    s = open_session(path)
    with pytest.raises(InputError, match="1 channel.*takes 3"):
        s.run(np.zeros((1, 1, 64, 64), np.float32))
    with pytest.raises(InputError, match="expected N×3×H×W"):
        s.run(np.zeros((3, 64, 64), np.float32))
    with pytest.raises(InputError, match="dtype is uint8"):
        s.run(np.zeros((1, 3, 64, 64), np.uint8))
    with pytest.raises(InputError, match="not a multiple of 32"):
        s.run(np.zeros((1, 3, 64, 70), np.float32))
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        open_session(path, providers=["CUDAExecutionProvider"])
    with pytest.raises(BackendError, match="unknown backend"):
        open_session(path, "openvino")


def test_preprocess_pads_and_labels_crop_back(fp32_model):
    _, meta, path = fp32_model
    image = np.random.default_rng(0).random((3, 70, 100)).astype(np.float32)
    x, size = preprocess(image, meta)
    assert x.shape == (1, 3, 96, 128) and size == (70, 100)
    assert np.allclose(x[0, :, :70, :100], (image - np.array(meta.mean)[:, None, None]) / np.array(meta.std)[:, None, None], atol=1e-6)
    labels = labels_from_outputs(open_session(path).run(x), meta, size)
    assert labels.shape == (1, 70, 100)


def test_tensorrt_backend_says_what_is_missing(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\x00" * 64)
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="TensorRT"):
            open_session(engine, "tensorrt")
    else:
        pytest.skip("TensorRT is installed here; the GPU tests cover it")
