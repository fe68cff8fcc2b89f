"""scripts/gpu_check.sh's CPU-side parts, run for real: its argument handling, its one-line exit without a CUDA
device, the hostile cases through the CPU launcher and the report written from them, the memory-bound arithmetic,
the checked CUDA entry points' refusals (they refuse before any CUDA call, so they run here), and the plugin
library's GPU architectures as `edgeseg check` reads them. The kernels themselves run only on a GPU machine."""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check_report  # noqa: E402

from edgeseg.ops import cuda_check  # noqa: E402
from edgeseg.export.check import check_model, library_facts, parse_target  # noqa: E402
from edgeseg.ops.export import PLUGIN_DOMAIN  # noqa: E402
from edgeseg.ops.native import plugin_dir  # noqa: E402


def run_script(*args, env=None):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def cpu_launcher_or_skip():
    if not (plugin_dir() / "libedgeseg_cpu.so").is_file():
        pytest.skip("libedgeseg_cpu.so is not built (scripts/build_plugins.sh)")


# --- the script's arguments and its exit without a device ---------------------------------------------------

@pytest.mark.parametrize("args", [(), ("a", "b"), ("",)])
def test_wrong_arguments_print_the_usage_and_exit_2(args):
    r = run_script(*args)
    assert r.returncode == 2 and r.stderr.strip() == "usage: scripts/gpu_check.sh OUT_DIR"


def test_help_and_an_out_dir_that_is_a_file(tmp_path):
    r = run_script("--help")
    assert r.returncode == 0 and "OUT_DIR" in r.stdout
    (tmp_path / "f").write_text("x")
    r = run_script(str(tmp_path / "f"))
    assert r.returncode == 2 and "is not a folder" in r.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device: the script would run for real")
def test_without_a_cuda_device_it_exits_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = run_script(str(out), env={"PYTHON": sys.executable})
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "no CUDA device" in lines[0]
    assert not out.exists()


# --- hostile cases through the CPU launcher, and the report written from them ----------------------------------

def test_hostile_cases_meet_their_expectations_on_the_cpu_launcher():
    cpu_launcher_or_skip()
    records = cuda_check.check_hostile(None)
    failed = [r for r in records if r["status"] != "ok"]
    assert not failed, failed
    kinds = {r["kernel"] for r in records}
    assert kinds == {"roi_align", "deform_conv2d", "dcnv3", "paste_masks", "panoptic_paste", "panoptic_merge"}
    refused = [r for r in records if r["expect"].startswith("refused")]
    assert len(refused) >= 12 and all(r["cpu"].startswith("EdgeSeg") for r in refused)  # named by the op
    assert any("2^31-1" in r["cpu"] for r in refused)  # the huge sizes are refused by the element budget


def test_a_wrong_expectation_is_reported_not_raised():
    cpu_launcher_or_skip()
    case = cuda_check.hostile_cases()["roi_align sampling_ratio 65536"]
    outcome = cuda_check.run_case(case, "cpu")
    assert outcome[0] == "refused" and "sampling_ratio" in outcome[1]
    assert cuda_check.expectation_met("refused:spatial_scale", outcome) is not None
    assert cuda_check.expectation_met("ran", outcome).startswith("expected an answer")
    ran = cuda_check.run_case(cuda_check.hostile_cases()["roi_align NaN/inf boxes, batch index out of range"], "cpu")
    assert ran[0] == "ran" and cuda_check.expectation_met("zeros:1", ran) is None
    assert cuda_check.expectation_met("zeros:0", ran) is not None  # the first box is a real one
    assert cuda_check.same_outcome(ran, ("ran", [ran[1][0] + 1e-3]), 1e-4).startswith("max abs difference")
    merged = cuda_check.run_case(cuda_check.hostile_cases()["panoptic_merge RoI masks in boxes"], "cpu")
    ids, table = merged[1]
    assert ids.dtype == torch.int32 and table.shape[1] == 5 and cuda_check.same_outcome(merged, merged, 0.0) is None
    assert "integer values differ" in cuda_check.same_outcome(merged, ("ran", [ids + 1, table]), 1.0)


def test_the_report_is_one_json_and_one_markdown_from_cpu_launcher_records(tmp_path):
    cpu_launcher_or_skip()
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    records = cuda_check.check_hostile(None)
    (work / "kernels.json").write_text(json.dumps({"device": "cpu launcher only", "hostile": records}))
    (work / "steps.tsv").write_text("build_cpu\tok\t3\nbuild_cuda\tfailed (1)\t7\n")
    (work / "build_cuda.log").write_text("compiling\nnvcc fatal   : Unsupported gpu architecture 'compute_999'\n")
    (work / "arch").write_text("999\n")
    result = gpu_check_report.report(work, out, machine_info={"cpu": "test"})
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]
    assert json.loads((out / "gpu_check.json").read_text()) == result
    assert not result["passed"] and result["failures"] == ["build_cuda"]
    assert "Unsupported gpu architecture" in result["steps"][1]["log_tail"]
    assert len(result["checks"]) == len(records) and result["arch"] == "999"
    md = (out / "gpu_check.md").read_text()
    assert "**FAILED**" in md and "| build_cuda | failed (1) | 7 |" in md and "sm_999" in md
    for r in records:
        assert f"| hostile | {r['kernel']} | {r['case']} | ok |" in md
    # every step ok or skipped as not applicable, every check ok: passed; a step the budget left out is a failure
    (work / "steps.tsv").write_text("build_cpu\tok\t3\ncuda_tests\tskipped (no pytest)\t0\n")
    assert gpu_check_report.report(work, out, machine_info={})["passed"]
    (work / "steps.tsv").write_text("build_cpu\tok\t3\nkernels\tnot run (budget spent)\t0\n")
    assert gpu_check_report.report(work, out, machine_info={})["failures"] == ["kernels"]


def test_the_report_cli_keeps_the_one_folder_form(tmp_path):
    (tmp_path / "steps.tsv").write_text("build_cuda\tok\t12\n")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check_report.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("gpu_check: passed")


# --- memory-bound arithmetic -----------------------------------------------------------------------------------

def test_peak_bandwidth_from_device_properties_matches_published_figures():
    # (memory clock in kHz as CUDA reports it, bus width in bits) -> the vendor's peak
    assert cuda_check.peak_bandwidth(2_619_000, 5120) / 1e12 == pytest.approx(3.35, abs=0.01)   # H100 SXM, HBM3
    assert cuda_check.peak_bandwidth(10_501_000, 384) / 1e9 == pytest.approx(1008, abs=1)      # RTX 4090, GDDR6X
    assert cuda_check.peak_bandwidth(3_199_000, 256) / 1e9 == pytest.approx(204.8, abs=0.1)    # Orin, LPDDR5


def test_memory_bound_estimate_counts_every_byte_once():
    w = {"x": torch.zeros(1, 8, 10, 10), "w": torch.zeros(4, 8, 3, 3), "offset": torch.zeros(1, 18, 10, 10),
         "mask": torch.zeros(1, 9, 10, 10), "b": torch.zeros(4)}
    # inputs 800 + 288 + 1800 + 900 + 4 values, output 1×4×10×10 = 400 values, 4 bytes each
    assert cuda_check.traffic_bytes("deform_conv2d", w) == 4 * (800 + 288 + 1800 + 900 + 4 + 400)
    roi = {"x": torch.zeros(1, 16, 50, 50), "rois": torch.zeros(10, 5), "out": 7}
    assert cuda_check.traffic_bytes("roi_align", roi) == 4 * 10 * 16 * 49 + 4 * 5 * 10  # outputs + boxes
    assert cuda_check.traffic_bytes("roi_align", roi, itemsize=2) == 2 * 10 * 16 * 49 + 4 * 5 * 10
    assert cuda_check.memory_bound_ms(3.35e9, 3.35e12) == pytest.approx(1.0)


# --- the checked CUDA entry points refuse before any CUDA call -------------------------------------------------

@pytest.fixture(scope="module")
def checked_cuda_lib(tmp_path_factory):
    """plugins/cuda/capi_checked*.cu compiled as host C++ (they have no kernel of their own) and linked with the
    CUDA launchers scripts/build_plugins.sh built; loading needs no driver, and a refused call makes no CUDA call."""
    archive = ROOT / "build" / "cmake" / "libedgeseg_launchers.a"
    homes = [Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")), Path("/usr/local/cuda")]
    if shutil.which("nvcc"):
        homes.insert(0, Path(shutil.which("nvcc")).resolve().parents[1])
    cuda = next((h for h in homes if (h / "include" / "cuda_runtime_api.h").is_file()), homes[-1])
    cudart = next(iter(sorted(cuda.glob("lib*/libcudart_static.a"))), None)
    if not archive.is_file() or cudart is None or shutil.which("g++") is None:
        pytest.skip("needs build/cmake/libedgeseg_launchers.a (scripts/build_plugins.sh with nvcc) and CUDA's libcudart_static.a")
    d = tmp_path_factory.mktemp("checked")
    objs, lib = [], d / "libchecked.so"
    for src in ("capi_checked", "capi_checked_panoptic"):
        objs.append(str(d / f"{src}.o"))
        subprocess.run(["g++", "-std=c++17", "-O1", "-fPIC", "-Wall", "-Wextra", "-Werror", "-x", "c++", "-c",
                        f"-I{cuda / 'include'}", f"-I{ROOT / 'plugins'}", f"-I{ROOT / 'plugins' / 'include'}",
                        str(ROOT / "plugins" / "cuda" / f"{src}.cu"), "-o", objs[-1]], check=True, timeout=120)
    link = subprocess.run(["g++", "-shared", "-o", str(lib), *objs, str(archive), str(cudart), "-ldl", "-lpthread",
                           "-lrt", "-Wl,--no-undefined"], capture_output=True, text=True, timeout=60)
    if link.returncode != 0:
        pytest.skip(f"the launcher archive does not link (stale build/cmake? rerun scripts/build_plugins.sh): {link.stderr[-300:]}")
    return ctypes.CDLL(str(lib))


def test_checked_cuda_entry_points_refuse_exactly_as_the_cpu_launcher(checked_cuda_lib):
    cpu_launcher_or_skip()
    records = cuda_check.check_hostile(checked_cuda_lib, device="cpu", only_refusals=True)
    refused = [r for r in records if r["expect"].startswith("refused")]
    assert refused and all(r["status"] == "ok" and r["cuda"] == r["cpu"] for r in refused), records


def test_a_valid_call_passes_validation_and_reaches_the_launch(checked_cuda_lib):
    # With no device the launch itself fails: a cudaError_t (> 0), not a refusal (-1), and no crash.
    case = cuda_check.hostile_cases()["roi_align no boxes"]
    op, inputs, attrs, _ = case
    case = (op, (torch.zeros(1, 3, 8, 8), torch.tensor([[1.0, 1, 5, 5]]), torch.zeros(1, dtype=torch.int32)), attrs, "ran")
    with pytest.raises(RuntimeError, match="cudaError_t [1-9]"):
        cuda_check.run_case(case, "cuda", checked_cuda_lib, device="cpu")
    with pytest.raises(RuntimeError, match="cudaError_t [1-9]"):  # its workspace allocation is the first CUDA call
        cuda_check.run_case(cuda_check.hostile_cases()["panoptic_merge RoI masks in boxes"], "cuda", checked_cuda_lib, device="cpu")


# --- the plugin library's GPU architectures --------------------------------------------------------------------

def _trt_library_or_skip() -> Path:
    lib = ROOT / "build" / "plugins" / "libedgeseg_trt.so"
    if not lib.is_file():
        pytest.skip("libedgeseg_trt.so is not built (scripts/build_plugins.sh with nvcc)")
    return lib


def test_the_library_holds_exactly_the_architectures_it_was_configured_for():
    lib, cache = ROOT / "build" / "cmake" / "libedgeseg_trt.so", ROOT / "build" / "cmake" / "CMakeCache.txt"
    if not lib.is_file() or not cache.is_file() or lib.stat().st_mtime < cache.stat().st_mtime:
        pytest.skip("build/cmake has no libedgeseg_trt.so built since its last configure (scripts/build_plugins.sh)")
    archs = re.search(r"^CMAKE_CUDA_ARCHITECTURES:\w+=(.*)$", cache.read_text(), re.M).group(1).split(";")
    want = set()
    for a in archs:  # CMake: "NN" = SASS + PTX, "NN-real" = SASS, "NN-virtual" = PTX
        num, _, kind = a.partition("-")
        want |= {("sass", int(num))} if kind == "real" else {("ptx", int(num))} if kind == "virtual" else \
            {("sass", int(num)), ("ptx", int(num))}
    machine, images = library_facts(lib)
    assert set(images) == want and machine in ("x86_64", "aarch64")


def _plugin_model() -> onnx.ModelProto:
    node = helper.make_node("EdgeSegRoIAlign", ["x", "rois", "batch"], ["y"], domain=PLUGIN_DOMAIN, name="roi",
                            plugin_version="1", plugin_namespace="", output_height=7, output_width=7, sampling_ratio=2,
                            spatial_scale=0.25, aligned=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32]),
                                            helper.make_tensor_value_info("rois", TensorProto.FLOAT, [4, 4]),
                                            helper.make_tensor_value_info("batch", TensorProto.INT32, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8, 7, 7])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(PLUGIN_DOMAIN, 1)])


def test_check_says_when_the_library_lacks_the_targets_architecture():
    lib = _trt_library_or_skip()
    _, images = library_facts(lib)
    model = _plugin_model()
    arch_problems = lambda target: [p for p in check_model(model, target, lib, creators={}).problems  # noqa: E731
                                    if "no code for" in str(p)]
    # sm_70 (Volta): nvcc 13 cannot target it, so no edgeseg build has code that runs there
    assert arch_problems("tensorrt@sm_70") and "EDGESEG_CUDA_ARCHS=70" in str(arch_problems("tensorrt@sm_70")[0])
    newest_ptx = max(a for k, a in images if k == "ptx")
    assert not arch_problems(f"tensorrt@sm_{max(newest_ptx, 90) + 10}")  # PTX is compiled by the driver for newer GPUs
    for kind, arch in images:
        if kind == "sass":
            assert not arch_problems(f"tensorrt@sm_{arch}")
    assert parse_target("tensorrt=10.3@sm_89").sm == 89 and parse_target("jetson").sm == 87


def test_the_fatbin_reading_agrees_with_cuobjdump():
    lib = _trt_library_or_skip()
    if shutil.which("cuobjdump") is None:
        pytest.skip("no cuobjdump here (the CUDA toolkit's full install has it; this one has nvcc only)")
    listed = set()
    for kind, flag in (("sass", "--list-elf"), ("ptx", "--list-ptx")):
        text = subprocess.run(["cuobjdump", flag, str(lib)], capture_output=True, text=True, timeout=60).stdout
        listed |= {(kind, int(a)) for a in re.findall(r"\.sm_(\d+)[a-z]?\.(?:cubin|ptx)", text)}
    assert set(library_facts(lib)[1]) == listed
