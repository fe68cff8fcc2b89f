"""Panoptic models trained on nuclei (nuclei are things, background is stuff), scored on the held-out crops:
PQ/SQ/RQ (edgeseg.metrics.panoptic, COCO panoptic's rules) and the semantic head's mIoU.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/panoptic_train.py [--models panoptic_fpn_resnet18] [--iterations N]

Panoptic FPN uses the Mask R-CNN recipe of benchmarks/instance_train.py (``MASKRCNN_RECIPE``: 8-px anchors,
64 sampled RoIs, 256-wide box head, 64-wide mask head, AdamW 1e-3, 20-step warm-up, batch 4 of 128² crops)
plus a 64-wide semantic branch; ``RECIPES`` below. Writes benchmarks/results/panoptic_train.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

from edgeseg.data import get_dataset  # noqa: E402
from edgeseg.evaluate import evaluate_panoptic  # noqa: E402
from edgeseg.io import write_text_atomic  # noqa: E402
from edgeseg.runtime import open_session  # noqa: E402
from edgeseg.sysinfo import machine_info  # noqa: E402
from edgeseg.train import train  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from instance_train import MASKRCNN_RECIPE  # noqa: E402

RECIPES = {
    "panoptic_fpn_resnet18": replace(MASKRCNN_RECIPE, model="panoptic_fpn_resnet18",
                                     model_args={**MASKRCNN_RECIPE.model_args, "semantic_channels": 64}),
    # LPSNet at the same step budget and optimiser (the seed's SGD + step decay is for 90k-step COCO schedules;
    # from scratch in 200 steps AdamW with warm-up trains, as for Mask R-CNN); narrower heads for the CPU,
    # FCOS's first level up to 32-px objects (nuclei are 10–25 px).
    "lpsnet_resnet18": replace(MASKRCNN_RECIPE, model="lpsnet_resnet18",
                               model_args={"fpn_channels": 128, "head_convs": 2, "semantic_channels": 64, "object_size": 32}),
}


def run(name: str, iterations: int, work: Path) -> dict:
    cfg = replace(RECIPES[name], iterations=iterations)
    t = time.perf_counter()
    _, state = train(cfg, work / f"{name}.pt", progress=False, log=print)
    train_s = time.perf_counter() - t
    scores = evaluate_panoptic(open_session(work / f"{name}.pt", backend="torch"), get_dataset("nuclei", "val"), progress=False)
    print(f"{name}: " + scores["panoptic"].line())
    return {"model": name, "recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "iterations": state["iteration"], "train_s": round(train_s, 1), "final_loss": state["losses"][-1],
            "panoptic": scores["panoptic"].as_dict(), "semantic_miou": scores["semantic"].miou,
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = ["# Panoptic segmentation on nuclei", "",
             "Nuclei are things, background is stuff; validation: the 7 held-out 128² crops. PQ/SQ/RQ by COCO panoptic's "
             "rules (match at IoU > 0.5), semantic mIoU of the model's own semantic head.", "",
             "| model | PQ | SQ | RQ | PQ things | PQ stuff | semantic mIoU | steps | train min |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["runs"]:
        p = r["panoptic"]
        lines.append(f"| {r['model']} | {p['pq']:.3f} | {p['sq']:.3f} | {p['rq']:.3f} | {p['pq_things']:.3f} | "
                     f"{p['pq_stuff']:.3f} | {r['semantic_miou']:.3f} | {r['iterations']} | {r['train_s'] / 60:.1f} |")
    lines += ["", f"Machine: {m['cpu']} ({m['cores']} cores), torch {m['torch']}; shared with other jobs (/proc/loadavg at "
              f"the end of each run: {'; '.join(' '.join(r['loadavg']) for r in report['runs'])}), so wall times are inflated. "
              f"Written by `benchmarks/panoptic_train.py` on {report['date']}.", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(RECIPES))
    p.add_argument("--iterations", type=int, default=MASKRCNN_RECIPE.iterations)
    p.add_argument("--work-dir", default="runs/panoptic_train")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args()
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    out = Path(a.out)
    runs = [run(name, a.iterations, work) for name in a.models.split(",")]
    if (out / "panoptic_train.json").is_file():  # keep the other models' runs of an earlier invocation
        earlier = json.loads((out / "panoptic_train.json").read_text())["runs"]
        runs = [r for r in earlier if r["model"] not in {x["model"] for x in runs}] + runs
    report = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "command": " ".join(sys.argv), "runs": runs}
    write_text_atomic(out / "panoptic_train.json", json.dumps(report, indent=1) + "\n")
    write_text_atomic(out / "panoptic_train.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
