"""Triton model repositories, each config.pbtxt parsed with Triton's own ModelConfig schema (the
model_config_pb2 of PyPI tritonclient; the server itself is not installable here)."""
import importlib.util
import json
import subprocess
import sys
import zipfile
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from edgeseg.deploy.triton import DeployError, triton_config, write_triton_repository
from edgeseg.export import export_onnx
from edgeseg.export.metadata import ModelMeta, load_onnx, read_metadata
from edgeseg.models import create
from edgeseg.runtime.tensorrt.build import graph_io

ROOT = Path(__file__).resolve().parents[1]
TRITONCLIENT = "tritonclient==2.73.0"


@pytest.fixture(scope="module")
def model_config():
    """Triton's ModelConfig message class, from the tritonclient wheel (fetched --no-deps: only the generated
    schema is used, not the gRPC client, whose dependencies would pin another protobuf)."""
    folder = ROOT / "build" / "tritonclient"
    pb2 = folder / "model_config_pb2.py"
    if not pb2.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", TRITONCLIENT, "-d", str(folder)],
                           capture_output=True, text=True, timeout=300)
        wheels = sorted(folder.glob("tritonclient-*.whl"))
        if r.returncode != 0 or not wheels:
            pytest.skip(f"cannot fetch {TRITONCLIENT} from the package registry: {r.stderr.strip()[-200:]}")
        pb2.write_bytes(zipfile.ZipFile(wheels[0]).read("tritonclient/grpc/model_config_pb2.py"))
    spec = importlib.util.spec_from_file_location("triton_model_config_pb2", pb2)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(pb2, text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, pb2.ModelConfig())


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("triton") / "seg.onnx"
    export_onnx(create("fcn8s_resnet18", num_classes=3, in_channels=3).eval(), path)
    return path


def test_onnx_runtime_repository(onnx_file, tmp_path, model_config):
    folder = write_triton_repository(onnx_file, tmp_path / "repo", instances=2, kind="cpu")
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_file.read_bytes()
    meta = read_metadata(load_onnx(onnx_file, load_weights=False), onnx_file)
    assert json.loads((folder / "edgeseg.json").read_text())["class_names"] == meta.class_names
    c = parse(model_config, (folder / "config.pbtxt").read_text())
    pb = model_config
    assert (c.name, c.platform, c.max_batch_size) == ("seg", "onnxruntime_onnx", 8)
    assert [(i.name, i.data_type, list(i.dims)) for i in c.input] == [(meta.input_name, pb.TYPE_FP32, [3, -1, -1])]
    assert [(o.name, o.data_type, list(o.dims)) for o in c.output] == [(meta.logits_output, pb.TYPE_FP32, [3, -1, -1])]
    assert c.dynamic_batching.max_queue_delay_microseconds == 100
    assert [(g.kind, g.count) for g in c.instance_group] == [(pb.ModelInstanceGroup.KIND_CPU, 2)]


def test_tensorrt_plan_repository_from_the_engine_sidecar(onnx_file, tmp_path, model_config):
    # No engine can be built here: the plan's bytes are copied as they are, never read, so any bytes do; the
    # sidecar is what 'edgeseg build' writes (metadata, profile, the ONNX graph's I/O table).
    proto = load_onnx(onnx_file, load_weights=False)
    meta = read_metadata(proto, onnx_file)
    engine = tmp_path / "seg_fp16.engine"
    engine.write_bytes(b"plan bytes")
    sidecar = {**asdict(meta), "precision": "fp16", "tensorrt_version": "10.3.0.30", "gpu": "Orin",
               "shapes": [{"name": "input", "min": [1, 3, 256, 256], "opt": [1, 3, 512, 512], "max": [4, 3, 1024, 1024]}],
               "bindings": graph_io(proto), "plugin_libraries": []}
    Path(str(engine) + ".json").write_text(json.dumps(sidecar))
    folder = write_triton_repository(engine, tmp_path / "repo", name="seg_trt", version=3)
    assert (folder / "3" / "model.plan").read_bytes() == b"plan bytes"
    c = parse(model_config, (folder / "config.pbtxt").read_text())
    assert (c.platform, c.max_batch_size) == ("tensorrt_plan", 4)  # the engine profile's max batch
    assert [(g.kind, g.count) for g in c.instance_group] == [(model_config.ModelInstanceGroup.KIND_GPU, 1)]
    with pytest.raises(DeployError, match="over the engine profile's 4"):
        write_triton_repository(engine, tmp_path / "repo2", max_batch_size=8)
    with pytest.raises(DeployError, match="GPU only"):
        write_triton_repository(engine, tmp_path / "repo2", kind="cpu")
    del sidecar["bindings"]
    Path(str(engine) + ".json").write_text(json.dumps(sidecar))
    with pytest.raises(DeployError, match="no input/output table"):
        write_triton_repository(engine, tmp_path / "repo2")
    assert not (tmp_path / "repo2").exists()


def test_fixed_batch_graph_gets_max_batch_zero_and_full_dims(model_config):
    meta = ModelMeta(model="pan", task="panoptic", class_names=["a", "b"])
    io = {"input": {"kind": "input", "dtype": "float32", "dims": [1, 3, -1, -1]},
          "panoptic": {"kind": "output", "dtype": "int32", "dims": [1, -1, -1]},
          "segments": {"kind": "output", "dtype": "int64", "dims": [1, 100, 4]}}
    c = parse(model_config, triton_config("pan", meta, io, "onnxruntime_onnx"))
    assert c.max_batch_size == 0 and not c.HasField("dynamic_batching")
    assert [(o.name, o.data_type, list(o.dims)) for o in c.output] == [
        ("panoptic", model_config.TYPE_INT32, [1, -1, -1]), ("segments", model_config.TYPE_INT64, [1, 100, 4])]
    with pytest.raises(DeployError, match="batch axis is fixed"):
        triton_config("pan", meta, io, "onnxruntime_onnx", max_batch_size=4)
    with pytest.raises(DeployError, match="model name"):
        triton_config("../evil", meta, io, "onnxruntime_onnx")


def test_triton_verb(onnx_file, tmp_path, model_config):
    r = subprocess.run([sys.executable, "-m", "edgeseg", "triton", str(onnx_file), "--repo", str(tmp_path / "repo"),
                        "--name", "seg", "--kind", "cpu", "--no-dynamic-batching"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    c = parse(model_config, (tmp_path / "repo" / "seg" / "config.pbtxt").read_text())
    assert c.max_batch_size == 8 and not c.HasField("dynamic_batching")
    r = subprocess.run([sys.executable, "-m", "edgeseg", "triton", str(onnx_file), "--repo", str(tmp_path / "r2"),
                        "--max-batch-size", "5000"], capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "max batch size 5000" in lines[0] and "Traceback" not in r.stderr
