"""The TensorRT backend cannot run here (no GPU, no full TensorRT), so it is type-checked against the
TensorRT 10 Python API stubs: a misspelt or missing TensorRT method fails this test."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_tensorrt_backend_typechecks_against_the_tensorrt_api(tmp_path):
    if shutil.which("mypy", path=str(ROOT / ".venv" / "bin")) is None:
        pytest.skip("mypy is not installed (pip install -e '.[dev]')")
    r = subprocess.run([str(ROOT / "scripts" / "typecheck_tensorrt.sh")], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    # The check has teeth: a call of a method TensorRT does not have is caught, and so is a layer profiler
    # (bench --profile) whose report_layer_time does not match trt.IProfiler's.
    src = (ROOT / "edgeseg" / "runtime" / "tensorrt" / "session.py").read_text()
    for good, wrong, caught in [
        ("self.context.set_input_shape(", "self.context.set_input_shapes(", "set_input_shapes"),
        ("def report_layer_time(self, layer_name: str, ms: float)", "def report_layer_time(self, layer_name: str)",
         "report_layer_time"),
        ("trt.LayerInformationFormat.JSON", "trt.LayerInformationFormat.YAML", "YAML"),
    ]:
        assert good in src
        bad = tmp_path / "tensorrt_session_bad.py"
        bad.write_text(src.replace(good, wrong))
        r = subprocess.run([str(ROOT / ".venv" / "bin" / "mypy"), "--config-file", str(ROOT / "pyproject.toml"), str(bad)],
                           capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "MYPYPATH": str(ROOT / "build" / "tensorrt-stubs")}, timeout=600)
        assert r.returncode != 0 and caught in r.stdout, (wrong, r.stdout)
