"""The real-time zoo against the mobile references at 1×3×512×1024 on the CPU: ONNX Runtime FP32 and INT8 median ms,
GFLOPs, the GFLOP/s each reaches against this CPU's SGEMM limit, parameters (issue 21).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/realtime_bench.py [--models a,b] [--append] [--repeats 10]
        [--report-only]

Writes benchmarks/results/realtime_cpu.{json,md} after every model (a stopped run keeps what it measured); with
--append the runs already there are kept and this one is added (ratios are only read within a run: the references,
DeepLabV3+-R18 and torchvision's LR-ASPP, are timed in every run). A thin
driver over ``edgeseg.bench.bench_model``: random weights (latency does not depend on them), INT8 calibrated on
synthetic scenes, each model's variants timed round-robin in one process. Time it on an otherwise idle machine, or say the load.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from edgeseg.bench import bench_model, loadavg, machine, sgemm_gflops, table, write_json_markdown  # noqa: E402
from edgeseg.bench.driver import driver_parser  # noqa: E402
from edgeseg.data.synthetic import make_scene  # noqa: E402
from edgeseg.export import default_meta  # noqa: E402
from edgeseg.models import TorchvisionSegmentation, create, gflops  # noqa: E402
from edgeseg.models.realtime import PAPER, inference_parameters  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TORCHVISION = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
MODELS = [*PAPER, *TORCHVISION, "deeplabv3plus_mobilenetv3_os16", "deeplabv3plus_resnet18_os16", "unet_padded"]
VARIANTS = ("onnxruntime:fp32", "onnxruntime:int8")


def build(name: str, num_classes: int) -> nn.Module:
    return TorchvisionSegmentation(name, num_classes) if name in TORCHVISION else create(name, num_classes=num_classes)


REFERENCES = ("deeplabv3plus_resnet18_os16", "lraspp_mobilenet_v3_large")  # the ratios' denominators, timed in every run


def main() -> None:
    # --append keeps the runs already in realtime_cpu.json and adds this one (the report is a list of runs).
    p = driver_parser(__doc__, MODELS, ROOT / "benchmarks" / "results",
                      append_help="keep the runs already in realtime_cpu.json and add this one")
    p.add_argument("--no-references", action="store_true", help=f"do not add {' and '.join(REFERENCES)} to --models")
    p.add_argument("--note", default="", help="what the markdown should say about this run (e.g. the machine's load)")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--calib-images", type=int, default=4)
    a = p.parse_args()
    out = Path(a.out)
    if a.report_only:
        if not (out / "realtime_cpu.json").is_file():
            raise SystemExit(f"{out / 'realtime_cpu.json'} does not exist: nothing to rewrite")
        write(load(out), out)
        return
    size = (a.height, a.width)
    names = a.models.split(",")
    names += [] if a.no_references else [r for r in REFERENCES if r not in names]
    report = load(out) if a.append else {"runs": []}
    calibration = [((make_scene(10_000 + i, *size, a.num_classes)[0][:3] - np.float32(0.5)) / np.float32(0.25))[None]
                   .astype(np.float32) for i in range(a.calib_images)]
    run = {"machine": machine(), "size": list(size), "sgemm_gflops": sgemm_gflops(), "repeats": a.repeats,
           "note": a.note, "loadavg_start": loadavg(), "rows": []}
    report["runs"].append(run)
    for name in names:
        torch.manual_seed(0)
        model = build(name, a.num_classes).eval()
        meta = default_meta(model)
        meta.mean, meta.std = [0.5] * 3, [0.25] * 3
        with torch.device("meta"):
            cost = gflops(build(name, a.num_classes), 3, size)
        with tempfile.TemporaryDirectory() as tmp:
            measured = bench_model(model, meta, VARIANTS, size, 1, Path(tmp), calibration, repeats=a.repeats, progress=False)
        row = {"model": name, "gflops": cost, "params_m": inference_parameters(model) / 1e6, "loadavg": loadavg()}
        for r in measured:
            row[f"{r['precision']}_ms"] = r["latency_ms_median"]
        row["fp32_gflops_per_s"] = cost / (row["fp32_ms"] / 1e3)
        row["fp32_share_of_sgemm"] = row["fp32_gflops_per_s"] / run["sgemm_gflops"]
        run["rows"].append(row)
        run["loadavg_end"] = loadavg()
        write(report, out)  # after every model: a stopped run keeps what it measured
    print((out / "realtime_cpu.md").read_text())


def load(out: Path) -> dict:
    """The report in ``out`` (its runs, realtime_train.py's training table), or one with no run yet."""
    path = out / "realtime_cpu.json"
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def _ratios(rows: list[dict]) -> dict[str, tuple[float | None, float | None]]:
    """Per model, within one run: the speed-up over DeepLabV3+-R18 and the time relative to torchvision's LR-ASPP."""
    ms = {r["model"]: r.get("fp32_ms") for r in rows}
    r18, lraspp = ms.get(REFERENCES[0]), ms.get(REFERENCES[1])
    return {m: (r18 / t if r18 and t else None, t / lraspp if lraspp and t else None) for m, t in ms.items()}


def write(report: dict, out: Path) -> None:
    """realtime_cpu.json and .md from the whole report (every run, and the training table realtime_train.py adds)."""
    size = report["runs"][0]["size"] if report["runs"] else [512, 1024]

    def num(v, fmt=".1f", suffix=""):
        return "–" if v is None else format(v, fmt) + suffix

    lines = [f"# Real-time models on the CPU, ONNX Runtime, 1×3×{size[0]}×{size[1]}", "",
             "GFLOPs: multiply and add counted apart; GFLOP/s against the machine's numpy SGEMM measured in the same run "
             "(ONNX Runtime's convolutions can exceed it). Random weights (latency does not depend on them); median of "
             "each run's repeats, FP32 and INT8 round-robin. Ratios are within one run only: the speed-up over "
             f"`{REFERENCES[0]}` and the time relative to torchvision's `{REFERENCES[1]}`, both timed in that run."]
    for i, run in enumerate(report["runs"], 1):
        m = run["machine"]
        loads = (f"load average {run['loadavg_start']} at the start, {run.get('loadavg_end')} at the end"
                 if run.get("loadavg_start") else "load average not recorded")
        lines += ["", f"## Run {i}", "",
                  f"{m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); onnxruntime {m['onnxruntime']}, torch "
                  f"{m['torch']}, python {m['python']}, OMP_WAIT_POLICY={m['omp_wait_policy']}; SGEMM "
                  f"{run['sgemm_gflops']:.0f} GFLOP/s; {loads}." + (f" {run['note']}" if run.get("note") else ""), ""]
        ratios = _ratios(run["rows"])
        lines += table(["model", "params (M)", "GFLOPs", "FP32 ms", "INT8 ms", "FP32 GFLOP/s", "of SGEMM",
                        f"× faster than {REFERENCES[0]}", "time / torchvision LR-ASPP"],
                       [[r["model"], f"{r['params_m']:.2f}", f"{r['gflops']:.1f}", num(r.get("fp32_ms")), num(r.get("int8_ms")),
                         f"{r['fp32_gflops_per_s']:.1f}", f"{100 * r['fp32_share_of_sgemm']:.0f} %",
                         num(ratios[r["model"]][0], ".2f", "×"), num(ratios[r["model"]][1], ".2f", "×")] for r in run["rows"]])
    lines += [""] + report.get("notes", []) if report.get("notes") else []  # the reading of the runs, kept in the JSON
    t = report.get("training")
    if t:
        lines += ["", "## LiTS mIoU after the same training budget", "", t["budget"], ""]
        lines += table(["model", "model args", "params (M)", "iterations", "train min", "final loss", "val mIoU", "liver IoU",
                        "tumour IoU"],
                       [[r["model"], r["model_args"] or "–", f"{r['params_m']:.2f}", r["iterations"], f"{r['minutes']:.1f}",
                         f"{r['final_loss']:.3f}", f"{r['miou']:.3f}", *(f"{r['per_class_iou'][c]:.3f}" for c in (1, 2))]
                        for r in t["rows"]], text_columns=2)
        lines += [""] + t.get("notes", [])
    write_json_markdown(report, out, "realtime_cpu", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
