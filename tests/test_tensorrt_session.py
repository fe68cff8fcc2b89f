"""The TensorRT session: what can be decided without a GPU (compatibility of an engine with this TensorRT and
GPU, sidecar checks, the message when TensorRT is missing). Running an engine needs a GPU: skipped here."""
import json

import numpy as np
import pytest

from edgeseg.errors import BackendError
from edgeseg.runtime import open_session
from edgeseg.runtime.tensorrt.session import check_engine_compatible, read_engine_sidecar

try:
    import tensorrt  # noqa: F401
    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False

BUILT = {"tensorrt_version": "10.3.0.30", "gpu": "Orin", "compute_capability": [8, 7]}


def test_engine_for_this_tensorrt_and_gpu_is_accepted():
    check_engine_compatible(BUILT, "m.engine", "10.3.0.30", "Orin", (8, 7))


@pytest.mark.parametrize("here, words", [
    (("10.16.1.11", "Orin", (8, 7)), "built with TensorRT 10.3.0.30, this is TensorRT 10.16.1.11"),
    (("10.3.0.30", "NVIDIA H200", (9, 0)), r"built for Orin \(sm_87\), this GPU is NVIDIA H200 \(sm_90\)"),
    (("10.3.0.30", "Orin", (8, 6)), "sm_87"),
])
def test_engine_from_another_version_or_gpu_is_refused_in_one_line(here, words):
    with pytest.raises(BackendError, match=words) as e:
        check_engine_compatible(BUILT, "m.engine", *here)
    assert "\n" not in str(e.value) and "edgeseg build MODEL.onnx --out m.engine" in str(e.value)


def test_version_and_hardware_compatible_engines():
    portable = {**BUILT, "version_compatible": True, "hardware_compatible": True}
    check_engine_compatible(portable, "m.engine", "10.16.1.11", "NVIDIA H200", (9, 0))  # newer 10.x, other Ampere+ GPU
    with pytest.raises(BackendError, match="built with TensorRT"):
        check_engine_compatible(portable, "m.engine", "10.2.0.0", "Orin", (8, 7))  # older runtime
    with pytest.raises(BackendError, match="built with TensorRT"):
        check_engine_compatible(portable, "m.engine", "11.0.0.1", "Orin", (8, 7))  # another major
    with pytest.raises(BackendError, match="from Ampere"):
        check_engine_compatible(portable, "m.engine", "10.3.0.30", "Tesla T4", (7, 5))


def test_sidecar_must_be_a_small_json_object(tmp_path):
    for content, words in [(b"[1, 2]", "not a JSON object"), (b"{nope", "not valid JSON"),
                           (b"[" * 100_000, "not valid JSON"), (b" " * ((1 << 20) + 1), "over")]:
        p = tmp_path / "m.engine.json"
        p.write_bytes(content)
        with pytest.raises(BackendError, match=words):
            read_engine_sidecar(p)
    p.write_text(json.dumps(BUILT))
    assert read_engine_sidecar(p) == BUILT


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed here: the GPU check covers the session")
def test_without_tensorrt_the_session_says_what_is_missing(tmp_path):
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"not read: TensorRT is checked first")
    for target in (onnx, tmp_path / "m.engine"):
        with pytest.raises(BackendError, match=r"TensorRT \(the full builder and runtime\) is not installed -- pip install"):
            open_session(target, "tensorrt", precision="fp16")


@pytest.mark.skipif(not HAVE_TRT, reason="needs full TensorRT, pycuda and an NVIDIA GPU (none here: "
                    "scripts/gpu_check.sh runs it on a GPU machine)")
def test_engine_runs_with_engine_dtypes_on_a_gpu(tmp_path):
    from edgeseg.export import export_onnx
    from edgeseg.models import create

    path = tmp_path / "m.onnx"
    meta = export_onnx(create("fcn8s_resnet18", num_classes=3).eval(), path)
    with open_session(path, "tensorrt", precision="fp16", cache_folder=tmp_path / "cache") as s:
        out = s.run(np.zeros((1, 3, 256, 256), np.float32))
        assert out[meta.logits_output].shape == (1, 3, 256, 256) and out[meta.logits_output].dtype == np.float32


def _tensorrt_missing():
    from edgeseg.bench import tensorrt_missing

    return tensorrt_missing()


@pytest.mark.skipif(_tensorrt_missing() is not None, reason=f"needs TensorRT, pycuda and an NVIDIA GPU ({_tensorrt_missing()})")
def test_layer_profile_comes_from_a_second_context_and_leaves_the_session_unprofiled(tmp_path):
    """bench --profile on TensorRT: an IProfiler on a context of its own reports every layer of every profiled run;
    the session's own context (the timed one) never gets a profiler."""
    from edgeseg.bench import profile_variant
    from edgeseg.export import export_onnx
    from edgeseg.models import create

    path = tmp_path / "m.onnx"
    export_onnx(create("fcn8s_resnet18", num_classes=3).eval(), path)
    batch = np.zeros((1, 3, 256, 256), np.float32)
    with open_session(path, "tensorrt", precision="fp16", cache_folder=tmp_path / "cache") as s:
        context = s.context
        layers = s.profile_layers(batch, warmup=1, runs=3)
        assert s.context is context and context.profiler is None
        assert layers and all(ms > 0 for _, ms in layers.values())
        p = profile_variant(s, batch, 1, 3)
        assert p["layers"] and p["op_types"] and 0 < p["layers_ms"]


def test_plugin_library_is_loaded_once_per_process_into_a_real_registry(tmp_path):
    """tensorrt_lean's plugin registry (the same IPluginRegistry as full TensorRT's, usable without a GPU) and the
    real libedgeseg_trt.so, in a fresh process: a second load is skipped, a rebuilt library at the same path is
    refused."""
    import os
    import shutil
    import subprocess
    import sys

    from edgeseg.ops.native import plugin_dir

    lib = plugin_dir() / "libedgeseg_trt.so"
    try:
        import tensorrt_lean  # noqa: F401
    except ImportError:
        pytest.skip("tensorrt_lean is not installed (pip install -e '.[dev]')")
    if not lib.is_file():
        pytest.skip(f"{lib} is not built (scripts/build_plugins.sh)")
    copy = tmp_path / "libedgeseg_trt.so"
    shutil.copy(lib, copy)
    code = f"""
import tensorrt_lean as trt
from edgeseg.errors import BackendError
from edgeseg.runtime.tensorrt.build import register_libraries
registry = trt.get_plugin_registry()
assert register_libraries(registry, [{str(copy)!r}]) == [__import__("pathlib").Path({str(copy)!r}).resolve()]
names = [c.name for c in registry.all_creators]
assert "EdgeSegRoIAlign" in names, names
assert register_libraries(registry, [{str(copy)!r}]) == []
assert [c.name for c in registry.all_creators] == names
with open({str(copy)!r}, "ab") as f:
    f.write(b"rebuilt")
try:
    register_libraries(registry, [{str(copy)!r}])
except BackendError as e:
    assert "changed since this process loaded it" in str(e)
else:
    raise AssertionError("a changed library was not refused")
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "EDGESEG_PLUGIN_DIR": str(plugin_dir())})
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
