"""`edgeseg build` and `edgeseg quantize --target tensorrt` from the command line. No engine is built here (no
GPU, no full TensorRT): the verb checks what it can, then says in one line what is missing and how to get it."""
import pytest
import torch

from edgeseg.export import export_onnx
from edgeseg.export.metadata import load_onnx, read_metadata
from edgeseg.models import create
from test_cli import assert_user_error, edgeseg

try:
    import tensorrt  # noqa: F401
    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False




@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("trt_cli") / "m.onnx"
    export_onnx(create("fcn8s_resnet18", num_classes=3, in_channels=1).eval(), path)
    return path


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: the GPU check builds engines")
def test_build_without_tensorrt_says_what_is_missing(onnx_file, tmp_path):
    out = tmp_path / "m.engine"
    line = assert_user_error(edgeseg("build", onnx_file, "--precision", "fp16", "--out", out, "--workspace", "512"),
                          "edgeseg build: error: TensorRT", "not installed", "pip install 'edgeseg[tensorrt]'")
    assert "GPU" in line and not out.exists()


def test_build_refuses_bad_shapes_and_a_float_graph_for_int8(onnx_file, tmp_path):
    assert_user_error(edgeseg("build", onnx_file, "--shapes", "input:1x1xbad", "--out", tmp_path / "m.engine"), "--shapes")
    assert_user_error(edgeseg("build", onnx_file, "--shapes", "input:1x1x100x100", "--out", tmp_path / "m.engine"),
                   "multiples of 32")
    assert_user_error(edgeseg("build", onnx_file, "--precision", "int8", "--out", tmp_path / "m.engine"),
                   "Q/DQ ONNX", "--target tensorrt")


def test_quantize_target_tensorrt_writes_8bit_weights_that_build_accepts(onnx_file, tmp_path):
    q = tmp_path / "q.onnx"
    r = edgeseg("quantize", onnx_file, "--out", q, "--target", "tensorrt", "--calib-data", "lits", "--calib-images", "2")
    assert r.returncode == 0, r.stderr
    assert read_metadata(load_onnx(q, load_weights=False), q).config["weight_bits"] == 8
    if not HAVE_TRT:  # past every check: only TensorRT itself is missing
        assert_user_error(edgeseg("build", q, "--precision", "int8", "--out", tmp_path / "q.engine"), "TensorRT", "not installed")
