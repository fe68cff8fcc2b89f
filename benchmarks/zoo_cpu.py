"""Every zoo model at 1×3×512×512: PyTorch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 on the CPU.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/zoo_cpu.py [--models a,b] [--repeats 5]

Writes benchmarks/results/zoo_cpu_512.{json,md,png} after every model (a stopped run keeps what it
measured), cheapest models first. Random weights (latency does not depend on them); INT8 calibrated on
synthetic scenes. The variants of each model are timed round-robin in one process.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

import torch  # noqa: E402

from edgeseg.bench import run_bench, write_report  # noqa: E402
from edgeseg.models import create, gflops, list_models  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="all")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calib-images", type=int, default=4)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    models = list_models() if a.models == "all" else a.models.split(",")
    with torch.device("meta"):
        cost = {m: gflops(create(m, num_classes=21), 3, (a.size, a.size)) for m in models}
    models.sort(key=cost.get)
    report: dict = {}
    for name in models:
        part = run_bench([name], size=(a.size, a.size), warmup=a.warmup, repeats=a.repeats,
                         calib_images=a.calib_images, progress=False)
        report = {**part, "rows": report.get("rows", []) + part["rows"],
                  "not_measured": [m for m in models if m not in {r["model"] for r in report.get("rows", []) + part["rows"]}]}
        paths = write_report(report, a.out, f"zoo_cpu_{a.size}", f"edgeseg zoo on the CPU, 1×3×{a.size}×{a.size}")
    print(paths[1].read_text())


if __name__ == "__main__":
    main()
