"""``edgeseg quantize`` and ``edgeseg train --qat`` end to end on a small trained U-Net (issue 22): the sensitivity
report, mixed precision recorded in the metadata, the TensorRT placement and QAT graphs passing the TensorRT check."""
import json

import pytest

from edgeseg.export.check import check_model
from edgeseg.export.metadata import load_onnx, read_metadata
from test_cli import assert_user_error, edgeseg


def _meta(path):
    return read_metadata(load_onnx(path, load_weights=False), path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("quant_cli")
    for args in (("train", "unet_padded", "--data", "synthetic", "--iterations", "30", "--batch-size", "4",
                  "--model-arg", "base_width=4", "--out", d / "m.pt"), ("export", d / "m.pt", "--out", d / "m.onnx")):
        result = edgeseg(*args)
        assert result.returncode == 0, result.stderr
    return d


def _quantize(trained, *args):
    result = edgeseg("quantize", trained / "m.onnx", "--calib-images", "4", "--check-images", "4", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_analyze_writes_a_ranked_table_and_a_chart(trained):
    out = _quantize(trained, "--analyze", "--group-depth", "2", "--out-dir", trained / "rep")
    report = json.loads((trained / "rep" / "m_sensitivity.json").read_text())
    assert (trained / "rep" / "m_sensitivity.png").stat().st_size > 1000
    drops = [row["drop_alone_int8"] for row in report["layers"]]
    assert len(drops) > 3 and drops == sorted(drops, reverse=True)
    assert "m_sensitivity.md" in out


def test_max_drop_records_the_float_layers(trained):
    out = _quantize(trained, "--max-drop", "0.5", "--out", trained / "mixed.onnx")
    meta = _meta(trained / "mixed.onnx")
    assert meta.precision == "int8" and meta.config["drop"] <= 0.5 and meta.config["check"]["passed"]
    assert isinstance(meta.config["float_layers"], list) and "kept in float" in out


def test_tensorrt_target_and_qat_pass_the_tensorrt_check(trained):
    _quantize(trained, "--target", "tensorrt", "--out", trained / "trt.onnx")
    result = edgeseg("train", "--qat", trained / "m.pt", "--iterations", "5", "--calib-images", "4",
                     "--out", trained / "qat.pt")
    assert result.returncode == 0, result.stderr
    for graph in ("trt.onnx", "qat_int8.onnx"):
        assert not check_model(trained / graph, "jetson").problems, graph
        assert any(n.op_type == "DequantizeLinear" for n in load_onnx(trained / graph, load_weights=False).graph.node)
    assert _meta(trained / "qat_int8.onnx").config["qat"] is True


def test_quant_options_refused_where_they_mean_nothing(trained):
    assert_user_error(edgeseg("quantize", trained / "m.onnx", "--precision", "fp16", "--analyze"), "INT8 options")
    assert_user_error(edgeseg("train", "unet_padded", "--qat", trained / "m.pt"), "--qat", "drop MODEL")
    assert_user_error(edgeseg("train"), "no model to train")
