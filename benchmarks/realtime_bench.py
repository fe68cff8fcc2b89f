"""The real-time zoo against the mobile references at 1×3×512×1024 on the CPU: ONNX Runtime FP32 and INT8 median ms,
GFLOPs, the GFLOP/s each reaches against this CPU's SGEMM limit, parameters (issue 21).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/realtime_bench.py [--models a,b] [--append] [--repeats 10]

Writes benchmarks/results/realtime_cpu.{json,md} after every model (a stopped run keeps what it measured); with
--append the runs already there are kept and this one is added (ratios are only read within a run: the references,
DeepLabV3+-R18 and torchvision's LR-ASPP, are timed in every run). A thin
driver over ``edgeseg.bench.bench_model``: random weights (latency does not depend on them), INT8 calibrated on
synthetic scenes, each model's variants timed round-robin in one process. Time it on an otherwise idle machine, or say the load.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from edgeseg.bench import bench_model, loadavg, machine  # noqa: E402
from edgeseg.data.synthetic import make_scene  # noqa: E402
from edgeseg.export import default_meta  # noqa: E402
from edgeseg.io import write_text_atomic  # noqa: E402
from edgeseg.models import create, gflops  # noqa: E402
from edgeseg.models.realtime import PAPER, inference_parameters  # noqa: E402

def sgemm_gflops(n: int = 2048, runs: int = 5) -> float:
    """This machine's float32 matrix-product rate (numpy), measured at run time: machines differ (ENVIRONMENT.md's
    72 GFLOP/s was an AVX2 machine; an AVX-512 one gave 130)."""
    import time

    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(runs):
        a @ a
    return 2 * n**3 * runs / (time.perf_counter() - t) / 1e9
TORCHVISION = ("lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
MODELS = [*PAPER, *TORCHVISION, "deeplabv3plus_mobilenetv3_os16", "deeplabv3plus_resnet18_os16", "unet_padded"]
VARIANTS = ("onnxruntime:fp32", "onnxruntime:int8")


class Torchvision(nn.Module):
    """A torchvision segmentation model under the zoo's contract ({"logits"}, edgeseg_config, size_divisor)."""

    def __init__(self, name: str, num_classes: int):
        super().__init__()
        self.net = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=num_classes)
        self.edgeseg_config = {"name": name, "num_classes": num_classes, "in_channels": 3}
        self.size_divisor = 32

    def forward(self, x):
        return {"logits": self.net(x)["out"]}


def build(name: str, num_classes: int) -> nn.Module:
    return Torchvision(name, num_classes) if name in TORCHVISION else create(name, num_classes=num_classes)


REFERENCES = ("deeplabv3plus_resnet18_os16", "lraspp_mobilenet_v3_large")  # the ratios' denominators, timed in every run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(MODELS), help="the references are added unless --no-references")
    p.add_argument("--no-references", action="store_true")
    p.add_argument("--append", action="store_true", help="keep the runs already in realtime_cpu.json, add this one")
    p.add_argument("--note", default="", help="what the markdown should say about this run (e.g. the machine's load)")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--calib-images", type=int, default=4)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    size = (a.height, a.width)
    names = a.models.split(",")
    names += [] if a.no_references else [r for r in REFERENCES if r not in names]
    out = Path(a.out)
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
    """The committed report; the first (single-run) layout becomes run 1 of the ``runs`` layout."""
    path = out / "realtime_cpu.json"
    report = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    if "runs" not in report:
        report = {"runs": [{k: report[k] for k in ("machine", "size", "sgemm_gflops", "rows")}]}
    return report


def _ratios(rows: list[dict]) -> dict[str, tuple[float | None, float | None]]:
    """Per model, within one run: the speed-up over DeepLabV3+-R18 and the time relative to torchvision's LR-ASPP."""
    ms = {r["model"]: r.get("fp32_ms") for r in rows}
    r18, lraspp = ms.get(REFERENCES[0]), ms.get(REFERENCES[1])
    return {m: (r18 / t if r18 and t else None, t / lraspp if lraspp and t else None) for m, t in ms.items()}


def write(report: dict, out: Path) -> None:
    """realtime_cpu.json and .md from the whole report (every run, and the training table realtime_train.py adds)."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "realtime_cpu.json", json.dumps(report, indent=1) + "\n")
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
        load = (f"load average {run['loadavg_start']} at the start, {run.get('loadavg_end')} at the end"
                if run.get("loadavg_start") else "load average not recorded")
        lines += ["", f"## Run {i}", "",
                  f"{m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); onnxruntime {m['onnxruntime']}, torch "
                  f"{m['torch']}, python {m['python']}, OMP_WAIT_POLICY={m['omp_wait_policy']}; SGEMM "
                  f"{run['sgemm_gflops']:.0f} GFLOP/s; {load}." + (f" {run['note']}" if run.get("note") else ""), "",
                  f"| model | params (M) | GFLOPs | FP32 ms | INT8 ms | FP32 GFLOP/s | of SGEMM | × faster than {REFERENCES[0]} "
                  f"| time / torchvision LR-ASPP |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ratios = _ratios(run["rows"])
        for r in run["rows"]:
            faster, rel = ratios[r["model"]]
            lines.append(f"| {r['model']} | {r['params_m']:.2f} | {r['gflops']:.1f} | {num(r.get('fp32_ms'))} | "
                         f"{num(r.get('int8_ms'))} | {r['fp32_gflops_per_s']:.1f} | {100 * r['fp32_share_of_sgemm']:.0f} % | "
                         f"{num(faster, '.2f', '×')} | {num(rel, '.2f', '×')} |")
    lines += [""] + report.get("notes", []) if report.get("notes") else []  # the reading of the runs, kept in the JSON
    t = report.get("training")
    if t:
        lines += ["", "## LiTS mIoU after the same training budget", "", t["budget"], "",
                  "| model | model args | params (M) | iterations | train min | final loss | val mIoU | liver IoU | tumour IoU |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in t["rows"]:
            iou = r["per_class_iou"]
            lines.append(f"| {r['model']} | {r['model_args'] or '–'} | {r['params_m']:.2f} | {r['iterations']} | "
                         f"{r['minutes']:.1f} | {r['final_loss']:.3f} | {r['miou']:.3f} | {iou[1]:.3f} | {iou[2]:.3f} |")
        lines += [""] + t.get("notes", [])
    write_text_atomic(out / "realtime_cpu.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
