"""Mask R-CNN (ResNet-18 FPN, random init) trained on the nuclei crops against a semantic U-Net whose
foreground is split into instances by connected components, both scored by the same pycocotools
evaluator (edgeseg.metrics.instance.InstanceEvaluator) on the held-out validation crops.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/instance_train.py [--iterations N] [--seed S]

Writes benchmarks/results/instance_train.{json,md}. The recipes are ``edgeseg.recipes.MASKRCNN_RECIPE`` and
``UNET_RECIPE`` (``tests/test_instance_train.py`` trains a shortened Mask R-CNN recipe).
Training is a fixed number of steps, so the accuracy does not depend on the machine's speed; the
wall time does (and on the load: /proc/loadavg is recorded).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import numpy as np  # noqa: E402
import torchvision  # noqa: E402

from edgeseg.data import get_dataset  # noqa: E402
from edgeseg.bench.report import write_json_markdown  # noqa: E402
from edgeseg.evaluate import evaluate_components_ap, evaluate_instances  # noqa: E402
from edgeseg.metrics.instance import APScores, InstanceEvaluator, components_as_detections, instance_truth  # noqa: E402
from edgeseg.recipes import MASKRCNN_RECIPE, UNET_RECIPE  # noqa: E402,F401  (MASKRCNN_RECIPE: this driver's, by name)
from edgeseg.runtime import open_session  # noqa: E402
from edgeseg.sysinfo import machine_info  # noqa: E402
from edgeseg.train import TrainConfig, train  # noqa: E402


def oracle_components(split: str = "val") -> dict[str, APScores]:
    """The ceiling of the connected-components approach: the ground-truth foreground itself, split by
    connected components (touching nuclei merge)."""
    ds = get_dataset("nuclei", split)
    ev = InstanceEvaluator(list(ds.info.class_names))
    for i in range(len(ds)):
        truth, fg = instance_truth(ds.instances[i], ds.raw(i)[1]), np.asarray(ds.instances[i]) > 0
        ev.add(truth.masks, truth.labels, components_as_detections(fg.astype(np.int64), np.stack([~fg, fg]), [1]))
    return ev.scores()


def train_and_evaluate(cfg: TrainConfig, checkpoint: str | Path, log=print) -> dict:
    """Train ``cfg``, then box and mask AP on the nuclei validation crops (connected components for a
    semantic model). Returns the recipe, the scores and the time."""
    load0 = open("/proc/loadavg").read().split()[:3]
    t = time.perf_counter()
    _, state = train(cfg, checkpoint, progress=False, log=log)
    train_s = time.perf_counter() - t
    load1 = open("/proc/loadavg").read().split()[:3]
    evaluator = evaluate_instances if cfg.model.startswith("maskrcnn") else evaluate_components_ap
    scores = evaluator(open_session(checkpoint, backend="torch"), get_dataset("nuclei", "val"), progress=False)
    for kind, s in scores.items():
        log(f"{cfg.model}: " + s.line(kind))
    return {"recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "iterations": state["iteration"], "train_s": round(train_s, 1), "final_loss": state["losses"][-1],
            "epoch_losses": [round(v, 4) for v in state["losses"]], "loadavg_before": load0, "loadavg_after": load1,
            **{kind: asdict(s) for kind, s in scores.items()}}


def _row(name: str, r: dict) -> str:
    b, m = r["bbox"], r["segm"]
    return (f"| {name} | {m['ap50']:.3f} | {m['ap']:.3f} | {m['ap75']:.3f} | {b['ap50']:.3f} | {b['ap']:.3f} | "
            f"{b['ap75']:.3f} | {r['iterations']} | {r['train_s'] / 60:.1f} |")


def write_report(report: dict, out_dir: Path) -> Path:
    mr, un = report["maskrcnn"], report["unet_cc"]
    lines = [
        "# Instance segmentation on nuclei: Mask R-CNN vs U-Net + connected components",
        "",
        f"Validation crops: {report['val_crops']} 128² crops of columns 352–512 of the stardist DSB-2018 image "
        f"({report['val_instances']} instance masks; train crops from columns 0–320). pycocotools AP "
        "(IoU .50:.95, .50, .75; max 100 detections), one evaluator for both.",
        "",
        "| model | mask AP50 | mask AP | mask AP75 | box AP50 | box AP | box AP75 | steps | train min |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        _row(f"maskrcnn_resnet18_fpn (seed {mr['recipe']['seed']})", mr),
        *[_row(f"maskrcnn_resnet18_fpn (seed {r['recipe']['seed']})", r) for r in report.get("maskrcnn_other_seeds", [])],
        _row("unet_padded (16) + connected components", un),
        "",
        f"**Mask AP50 ≥ 0.5: {'met' if mr['segm']['ap50'] >= 0.5 else 'NOT met'}** ({mr['segm']['ap50']:.3f}); "
        f"**≥ the U-Net + CC baseline ({un['segm']['ap50']:.3f}): "
        f"{'met' if mr['segm']['ap50'] >= un['segm']['ap50'] else 'NOT met'}**.",
        "",
        "## Recipes",
        "",
        f"- Mask R-CNN: `{json.dumps({k: v for k, v in mr['recipe'].items() if k not in ('dataset_args', 'epochs', 'minutes')})}`",
        f"- U-Net: `{json.dumps({k: v for k, v in un['recipe'].items() if k not in ('dataset_args', 'epochs', 'minutes')})}`; "
        "instances = 4-connected components of the argmax foreground, score = mean foreground probability.",
        "",
        "## Notes",
        "",
        f"- Ceiling of U-Net + connected components: the ground-truth foreground split into components scores mask "
        f"AP50 {report['oracle_cc']['segm']['ap50']:.3f} (mask AP {report['oracle_cc']['segm']['ap']:.3f}): touching "
        "nuclei merge into one component, which no semantic model can undo.",
        "- Cost: the paper's sampling (512 RoIs per image, 1024-wide box head, 256-wide mask head, anchors from 32 px) "
        "took ~25 s per step of 4×128² on this machine (13 s with 128 RoIs and 8 px anchors; mask-head convolutions, RoIAlign's backward, fc6); this "
        "recipe ~1.5 s unloaded. From scratch, AdamW 1e-3 with a 20-step warm-up trains stably (the initial mask loss "
        "is ~4–9, not 0.69: random FPN features are large).",
        "- Shorter runs of this recipe (10-step warm-up), mask AP50: 40 steps 0.40 (seed 0); 60 steps 0.59 (seed 0); "
        "80 steps 0.75 / 0.71 (seeds 0 / 1). The CI gate (`tests/test_instance_train.py`) trains 80 steps and asserts "
        "≥ 0.5 (2.3 min on the 2 unloaded cores).",
        *report.get("notes", []),
        "",
        "## Machine",
        "",
        f"{report['machine']['cpu']}, {report['machine']['cores']} cores ({report['machine']['torch_threads']} torch threads), "
        f"shared with other jobs: /proc/loadavg before/after Mask R-CNN training {' '.join(mr['loadavg_before'])} / "
        f"{' '.join(mr['loadavg_after'])}, so wall times are inflated. Python {report['machine']['python']}, torch "
        f"{report['machine']['torch']}, torchvision {report['machine']['torchvision']}, pycocotools "
        f"{report['machine']['pycocotools']}, numpy {report['machine']['numpy']}. Written by `benchmarks/instance_train.py` "
        f"on {report['date']}.",
        "",
    ]
    return write_json_markdown(report, out_dir, "instance_train", "\n".join(lines))[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=MASKRCNN_RECIPE.iterations, help="Mask R-CNN steps")
    p.add_argument("--seeds", default="0", help="Mask R-CNN seeds, comma-separated (the first is the headline)")
    p.add_argument("--unet-iterations", type=int, default=UNET_RECIPE.iterations)
    p.add_argument("--work-dir", default="runs/instance_train")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--report-only", "--render", dest="render", action="store_true",
                   help="only rewrite the markdown from the JSON in --out")
    a = p.parse_args()
    if a.render:
        saved = json.loads((Path(a.out) / "instance_train.json").read_text())
        saved.setdefault("oracle_cc", {k: asdict(v) for k, v in oracle_components().items()})
        print(write_report(saved, Path(a.out)).read_text())
        return
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    val = get_dataset("nuclei", "val")
    machine = {**machine_info(), "torchvision": torchvision.__version__, "pycocotools": version("pycocotools")}
    report: dict = {"date": time.strftime("%Y-%m-%d"), "machine": machine, "val_crops": len(val),
                    "val_instances": int(sum(len(np.unique(i)) - 1 for i in val.instances)), "command": " ".join(sys.argv),
                    "oracle_cc": {k: asdict(v) for k, v in oracle_components().items()}}
    runs = []
    for seed in [int(s) for s in a.seeds.split(",")]:
        cfg = replace(MASKRCNN_RECIPE, iterations=a.iterations, seed=seed)
        runs.append(train_and_evaluate(cfg, work / f"maskrcnn_seed{seed}.pt"))
    report["maskrcnn"], report["maskrcnn_other_seeds"] = runs[0], runs[1:]
    report["unet_cc"] = train_and_evaluate(replace(UNET_RECIPE, iterations=a.unet_iterations), work / "unet.pt")
    print(write_report(report, Path(a.out)).read_text())


if __name__ == "__main__":
    main()
