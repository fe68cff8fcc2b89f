"""Mask R-CNN (ResNet-18 FPN) trained on nuclei, in every precision: mask AP on the held-out crops beside
latency, the accuracy-vs-speed table and plot of the instance work.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/instance_precision.py [--checkpoint runs/.../m.pt]

Trains ``edgeseg.recipes.MASKRCNN_RECIPE`` (200 steps) unless the checkpoint exists, then runs the same
measurement as ``edgeseg bench --checkpoints <ckpt> --data nuclei --variants <VARIANTS>``: export (portable),
FP16 conversion, INT8 calibrated on 16 training crops, each timed round-robin on a validation crop and
scored by pycocotools on all validation crops. Writes benchmarks/results/instance_precision.{json,md,png}.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

from edgeseg.bench import bench_checkpoints, write_report  # noqa: E402
from edgeseg.train import train  # noqa: E402

HERE = Path(__file__).resolve().parent
VARIANTS = ("torch:fp32", "onnxruntime:fp32", "onnxruntime:fp16", "onnxruntime:int8")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="runs/instance_precision/maskrcnn_r18_nuclei.pt")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args()
    if not Path(a.checkpoint).is_file():
        from edgeseg.recipes import MASKRCNN_RECIPE

        train(MASKRCNN_RECIPE, a.checkpoint, progress=True)
    report = bench_checkpoints([a.checkpoint], "nuclei", VARIANTS, calib_images=16, warmup=3, repeats=a.repeats)
    report["loadavg"] = open("/proc/loadavg").read().split()[:3]
    paths = write_report(report, a.out, "instance_precision", "Mask R-CNN R18 on nuclei (128² crops): mask AP vs latency")
    notes = [
        "", "Notes:", "",
        "- `torch` is edgeseg's eager pipeline (`MaskRCNN.detect`, whose RoIAlign is the PyTorch reference op), the model "
        "every variant is exported from; torchvision's own eager pipeline is the baseline in `instance_cpu.md`.",
        "- Accuracy: pycocotools mask AP (IoU .50:.95) on all validation crops; INT8 calibrated on 16 training crops "
        "(min-max, 7-bit weights: ORT's AVX2 kernels). Agreement: matched detections' binarised masks on the timed crop.",
        f"- Load during the run (/proc/loadavg at the end): {' '.join(report['loadavg'])} on 2 cores, shared with other "
        "jobs: absolute times are inflated, the ratios were measured side by side.",
    ]
    with open(paths[1], "a") as f:
        f.write("\n".join(notes) + "\n")
    print(paths[1].read_text())


if __name__ == "__main__":
    main()
