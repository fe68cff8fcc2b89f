"""The parts of the engine build that need no TensorRT: shape profiles from the metadata and from
trtexec-style strings, and the refusals made before TensorRT is asked (real exports and real Q/DQ graphs)."""
import pytest

from edgeseg.data import get_dataset
from edgeseg.errors import BackendError
from edgeseg.export import export_onnx
from edgeseg.export.metadata import ModelMeta, load_onnx, read_metadata
from edgeseg.models import create
from edgeseg.quant import quantize_int8
from edgeseg.runtime import preprocess
from edgeseg.runtime.tensorrt.build import (build_engine, check_int8_for_tensorrt, check_profile, derive_profile,
                                            graph_input_dims, parse_shapes)
from edgeseg.runtime.tensorrt.cache import ShapeProfile

try:
    import tensorrt  # noqa: F401
    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trt_build")
    path = folder / "m.onnx"
    meta = export_onnx(create("fcn8s_resnet18", num_classes=3, in_channels=3).eval(), path)
    ds = get_dataset("synthetic", "train", num_images=2, size=(64, 64), num_classes=3)
    calib = [preprocess(ds.raw(i)[0], meta)[0] for i in range(2)]
    q7, q8 = folder / "q7.onnx", folder / "q8.onnx"
    quantize_int8(path, q7, calib, reduce_range=True)
    quantize_int8(path, q8, calib, reduce_range=False)
    return path, q7, q8


def test_parse_shapes_trtexec_style():
    assert parse_shapes("input:1x3x512x512") == [ShapeProfile("input", (1, 3, 512, 512), (1, 3, 512, 512), (1, 3, 512, 512))]
    assert parse_shapes("input:1x3x256x256:1x3x512x512:4x3x1024x1024, mask:1x1x8x8") == [
        ShapeProfile("input", (1, 3, 256, 256), (1, 3, 512, 512), (4, 3, 1024, 1024)),
        ShapeProfile("mask", (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 8, 8))]
    assert parse_shapes("input:0:1x3x64x64")[0].name == "input:0"  # a TF-style name keeps its colon
    for bad, words in [("input", "NAME:DIMS"), ("1x3x8x8", "NAME:DIMS"), ("input:1x3xAx8", "NAME:DIMS"),
                       ("input:4x3x64x64:1x3x64x64:2x3x64x64", "min <= opt <= max"), ("a:1x1,a:1x2", "twice"),
                       ("input:0x3x64x64", "positive")]:
        with pytest.raises(BackendError, match=words):
            parse_shapes(bad)


def test_profile_from_a_real_export(exported):
    path, _, _ = exported
    proto = load_onnx(path, load_weights=False)
    meta = read_metadata(proto, path)
    dims = graph_input_dims(proto)[meta.input_name]
    assert dims == [None, 3, None, None]
    assert derive_profile(meta, dims) == ShapeProfile(meta.input_name, (1, 3, 256, 256), (1, 3, 512, 512), (4, 3, 1024, 1024))


def test_profile_aligns_sides_fixes_panoptic_batch_and_follows_layout():
    meta = ModelMeta(model="m", size_divisor=48)
    p = derive_profile(meta, [None, 3, None, None], max_batch=8)
    assert (p.min, p.opt, p.max) == ((1, 3, 288, 288), (1, 3, 528, 528), (8, 3, 1056, 1056))
    pan = ModelMeta(model="p", task="panoptic", class_names=["a", "b"])
    assert derive_profile(pan, [2, 3, None, None]).max[0] == 2 and derive_profile(pan, [2, 3, None, None]).min[0] == 2
    assert derive_profile(pan, [None, 3, None, None]).max[0] == 1
    nhwc = ModelMeta(model="n", input_layout="NHWC", in_channels=1, input_size=[200, 300])
    assert derive_profile(nhwc, [None, None, None, 1]).max == (4, 200, 300, 1)
    with pytest.raises(BackendError, match="channels"):
        derive_profile(ModelMeta(model="m"), [None, 1, None, None])


def test_deploy_graph_profile_is_frames_of_any_size():
    """A deploy graph (uint8 N×H×W×C frames, padded inside the graph) builds for frame sizes, not multiples of the divisor."""
    meta = ModelMeta(model="f", io="frames", size_divisor=32)
    p = derive_profile(meta, [None, None, None, 3], max_batch=2)
    assert p.min[3] == p.max[3] == 3 and p.max[0] == 2
    check_profile(parse_shapes("input:1x479x641x3:1x720x1280x3:2x1080x1920x3")[0], meta, [None, None, None, 3])
    with pytest.raises(BackendError, match="axis 3"):  # N×C×H×W shapes against the frames input
        check_profile(parse_shapes("input:1x3x480x640")[0], meta, [None, None, None, 3])


def test_explicit_profiles_are_checked_against_graph_and_metadata():
    meta = ModelMeta(model="m", size_divisor=32)
    dims = [None, 3, None, None]
    check_profile(parse_shapes("input:1x3x256x256:2x3x512x512:4x3x1024x1024")[0], meta, dims)
    for text, words in [("image:1x3x256x256", "model's input is 'input'"), ("input:1x3x250x256", "multiples of 32"),
                        ("input:1x1x256x256", "graph fixes it at 3"), ("input:1x3x256", "rank"),
                        ("input:1x3x256x256:1x3x256x256:1x3x16384x16384", "budget")]:
        with pytest.raises(BackendError, match=words):
            check_profile(parse_shapes(text)[0], meta, dims)
    pan = ModelMeta(model="p", task="panoptic", class_names=["a"])
    with pytest.raises(BackendError, match="one image at a time"):
        check_profile(parse_shapes("input:1x3x256x256:1x3x256x256:2x3x256x256")[0], pan, dims)


def test_seven_bit_qdq_graph_is_refused_for_tensorrt_with_the_fix(exported, tmp_path):
    path, q7, q8 = exported
    meta7, meta8 = (read_metadata(load_onnx(q, load_weights=False), q) for q in (q7, q8))
    assert meta7.config["weight_bits"] == 7 and meta8.config["weight_bits"] == 8
    with pytest.raises(BackendError, match="7-bit weights.*edgeseg quantize MODEL.onnx --target tensorrt"):
        build_engine(q7, tmp_path / "m.engine", "int8")
    check_int8_for_tensorrt(meta8, q8)
    with pytest.raises(BackendError, match="Q/DQ ONNX"):
        build_engine(path, tmp_path / "m.engine", "int8")
    with pytest.raises(BackendError, match="--precision int8"):
        build_engine(q8, tmp_path / "m.engine", "fp16")
    with pytest.raises(BackendError, match="DLA runs FP16 and INT8 only"):
        build_engine(path, tmp_path / "m.engine", "fp32", dla_core=0)
    with pytest.raises(BackendError, match="multiples of 32"):
        build_engine(path, tmp_path / "m.engine", "fp16", shapes="input:1x3x100x100")
    if not HAVE_TRT:  # the checks pass; then TensorRT itself is what is missing, said in one line
        with pytest.raises(BackendError, match="TensorRT .* is not installed -- pip install"):
            build_engine(q8, tmp_path / "m.engine", "int8")
    assert not (tmp_path / "m.engine").exists()


def test_build_takes_the_onnx_read_once(exported, tmp_path):
    """The build works on the graph and metadata its caller read (``OnnxSource``): with the file gone, every check
    before TensorRT still runs on what was read, and nothing goes back to the path."""
    import shutil
    from pathlib import Path

    from edgeseg.runtime.tensorrt.build import OnnxSource

    _, _, q8 = exported
    copy = Path(shutil.copy(q8, tmp_path / "q8.onnx"))
    source = OnnxSource.read(copy)
    assert source.meta.config["weight_bits"] == 8 and source.path == copy
    copy.unlink()
    with pytest.raises(BackendError, match="--precision int8"):  # a check on the metadata read
        build_engine(source, tmp_path / "m.engine", "fp16")
    with pytest.raises(BackendError, match="not an input of"):  # a check on the graph read
        build_engine(source, tmp_path / "m.engine", "int8", shapes="images:1x3x64x64")
    if not HAVE_TRT:  # every check passed on the source; then TensorRT itself is what is missing
        with pytest.raises(BackendError, match="TensorRT .* is not installed"):
            build_engine(source, tmp_path / "m.engine", "int8")
    assert not (tmp_path / "m.engine").exists()
