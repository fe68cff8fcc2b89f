"""The real-time zoo against the mobile references at 1×3×512×1024 on the CPU: ONNX Runtime FP32 and INT8 median ms,
GFLOPs, the GFLOP/s each reaches against this CPU's SGEMM limit, parameters (issue 21).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/realtime_bench.py [--models a,b] [--repeats 10]

Writes benchmarks/results/realtime_cpu.{json,md} after every model (a stopped run keeps what it measured). A thin
driver over ``edgeseg.bench.bench_model``: random weights (latency does not depend on them), INT8 calibrated on
synthetic scenes, each model's variants timed round-robin in one process. Time it on an otherwise idle machine.
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

from edgeseg.bench import bench_model, machine  # noqa: E402
from edgeseg.data.synthetic import make_scene  # noqa: E402
from edgeseg.export import default_meta  # noqa: E402
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--calib-images", type=int, default=4)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    size = (a.height, a.width)
    calibration = [((make_scene(10_000 + i, *size, a.num_classes)[0][:3] - np.float32(0.5)) / np.float32(0.25))[None]
                   .astype(np.float32) for i in range(a.calib_images)]
    sgemm = sgemm_gflops()
    rows = []
    for name in a.models.split(","):
        torch.manual_seed(0)
        model = build(name, a.num_classes).eval()
        meta = default_meta(model)
        meta.mean, meta.std = [0.5] * 3, [0.25] * 3
        with torch.device("meta"):
            cost = gflops(build(name, a.num_classes), 3, size)
        with tempfile.TemporaryDirectory() as tmp:
            measured = bench_model(model, meta, VARIANTS, size, 1, Path(tmp), calibration, repeats=a.repeats, progress=False)
        row = {"model": name, "gflops": cost, "params_m": inference_parameters(model) / 1e6}
        for r in measured:
            row[f"{r['precision']}_ms"] = r["latency_ms_median"]
        row["fp32_gflops_per_s"] = cost / (row["fp32_ms"] / 1e3)
        row["fp32_share_of_sgemm"] = row["fp32_gflops_per_s"] / sgemm
        rows.append(row)
        write(rows, size, Path(a.out), sgemm)
    print((Path(a.out) / "realtime_cpu.md").read_text())


def write(rows: list[dict], size: tuple[int, int], out: Path, sgemm: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "realtime_cpu.json").write_text(json.dumps({"machine": machine(), "size": list(size), "sgemm_gflops": sgemm,
                                                       "rows": rows}, indent=1))
    lines = [f"# Real-time models on the CPU, ONNX Runtime, 1×3×{size[0]}×{size[1]}", "",
             f"GFLOPs: multiply and add counted apart; GFLOP/s against this machine's numpy SGEMM, {sgemm:.0f} GFLOP/s (measured in the run; "
             "ONNX Runtime's convolutions can exceed it).", "",
             "| model | params (M) | GFLOPs | FP32 ms | INT8 ms | FP32 GFLOP/s | of SGEMM |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params_m']:.2f} | {r['gflops']:.1f} | {r.get('fp32_ms', float('nan')):.1f} | "
                     f"{r.get('int8_ms', float('nan')):.1f} | {r['fp32_gflops_per_s']:.1f} | {100 * r['fp32_share_of_sgemm']:.0f} % |")
    (out / "realtime_cpu.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
