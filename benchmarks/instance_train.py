"""Mask R-CNN (ResNet-18 FPN, random init) trained on the nuclei crops against a semantic U-Net whose
foreground is split into instances by connected components, both scored by the same pycocotools
evaluator (edgeseg.metrics.instance.InstanceEvaluator) on the held-out validation crops.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/instance_train.py [--iterations N] [--seed S]

Writes benchmarks/results/instance_train.{json,md}. The recipes are ``MASKRCNN_RECIPE`` and
``UNET_RECIPE`` below (``tests/test_instance_train.py`` trains a shortened Mask R-CNN recipe).
Training is a fixed number of steps, so the accuracy does not depend on the machine's speed; the
wall time does (and on the load: /proc/loadavg is recorded).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch starts its thread pool

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgeseg.data import get_dataset  # noqa: E402
from edgeseg.evaluate import evaluate_instances  # noqa: E402
from edgeseg.metrics.instance import APScores, InstanceEvaluator  # noqa: E402
from edgeseg.runtime import open_session, preprocess  # noqa: E402
from edgeseg.train import TrainConfig, train  # noqa: E402

# Nuclei are ~10–25 px: anchors from 8 px (paper: 32). The paper's 512 sampled RoIs per image (a quarter
# positive) through a 1024-wide box head and a 256-wide mask head made a CPU step cost ~20 s, mostly
# mask-head convolutions, RoIAlign's backward and fc6: 64 RoIs per image (a 128² crop holds ~10 nuclei,
# so the positives are all kept), a 256-wide box head and a 64-wide mask head cost ~2 s.
MASKRCNN_RECIPE = TrainConfig(
    model="maskrcnn_resnet18_fpn", dataset="nuclei",
    model_args={"anchor_size": 8, "train_proposals": 1000, "box_batch_size_per_image": 64,
                "representation_size": 256, "mask_channels": 64},
    iterations=200, batch_size=4, crop=128, optimizer="adamw", lr=1e-3, warmup_iters=20, seed=0,
)
# The quickstart's U-Net recipe (16-channel padded U-Net, AdamW 3e-3, 128 crops) with the U-Net paper's
# weight map (class balance + separation borders between touching nuclei), batch 4 (28 training crops).
UNET_RECIPE = TrainConfig(
    model="unet_padded", dataset="nuclei", model_args={"base_width": 16}, iterations=300, batch_size=4,
    optimizer="adamw", lr=3e-3, crop=128, weight_map=True, seed=0,
)


def _ground_truth(ds, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i's instances as ``evaluate_instances`` builds them (K×H×W bool, class 1 each)."""
    ids = np.asarray(ds.instances[i])
    keys = [k for k in np.unique(ids) if k > 0]
    gt = np.stack([ids == k for k in keys]) if keys else np.zeros((0, *ids.shape), bool)
    return gt, np.ones(len(gt), np.int64)


def components(foreground: np.ndarray, probability: np.ndarray) -> dict[str, np.ndarray]:
    """Connected components (4-connected, scipy.ndimage.label) of a foreground map as detections:
    box around the pixels, score = the component's mean foreground probability, class 1."""
    from scipy import ndimage

    labels, n = ndimage.label(foreground)
    masks = np.stack([labels == k for k in range(1, n + 1)]) if n else np.zeros((0, *foreground.shape), bool)
    boxes, scores = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        scores.append(float(probability[m].mean()))
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.ones(n, np.int64), "masks": masks.astype(np.float32)}


def oracle_components(split: str = "val") -> dict[str, APScores]:
    """The ceiling of the connected-components approach: the ground-truth foreground itself, split by
    connected components (touching nuclei merge)."""
    ds = get_dataset("nuclei", split)
    ev = InstanceEvaluator(list(ds.info.class_names))
    for i in range(len(ds)):
        fg = np.asarray(ds.instances[i]) > 0
        ev.add(*_ground_truth(ds, i), components(fg, fg.astype(np.float32)))
    return ev.scores()


def evaluate_semantic_as_instances(checkpoint: str | Path, split: str = "val") -> dict[str, APScores]:
    """A semantic model's argmax foreground, split into instances by connected components, scored by the
    same evaluator as the instance models."""
    session = open_session(checkpoint, backend="torch")
    ds = get_dataset("nuclei", split)
    ev = InstanceEvaluator(session.meta.class_names)
    for i in range(len(ds)):
        image, _ = ds.raw(i)
        x, (h, w) = preprocess(image, session.meta)
        logits = torch.from_numpy(session.run(x)[session.meta.logits_output])[0, :, :h, :w]
        prob = logits.softmax(0)[1].numpy()
        ev.add(*_ground_truth(ds, i), components(logits.argmax(0).numpy() == 1, prob))
    return ev.scores()


def train_and_evaluate(cfg: TrainConfig, checkpoint: str | Path, log=print) -> dict:
    """Train ``cfg``, then box and mask AP on the nuclei validation crops (connected components for a
    semantic model). Returns the recipe, the scores and the time."""
    load0 = open("/proc/loadavg").read().split()[:3]
    t = time.perf_counter()
    _, state = train(cfg, checkpoint, progress=False, log=log)
    train_s = time.perf_counter() - t
    load1 = open("/proc/loadavg").read().split()[:3]
    if cfg.model.startswith("maskrcnn"):
        scores = evaluate_instances(open_session(checkpoint, backend="torch"), get_dataset("nuclei", "val"), progress=False)
    else:
        scores = evaluate_semantic_as_instances(checkpoint)
    for kind, s in scores.items():
        log(f"{cfg.model}: " + s.line(kind))
    return {"recipe": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "iterations": state["iteration"], "train_s": round(train_s, 1), "final_loss": state["losses"][-1],
            "epoch_losses": [round(v, 4) for v in state["losses"]], "loadavg_before": load0, "loadavg_after": load1,
            **{kind: asdict(s) for kind, s in scores.items()}}


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    from importlib.metadata import version

    import torchvision

    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pycocotools": version("pycocotools"), "numpy": np.__version__}


def _row(name: str, r: dict) -> str:
    b, m = r["bbox"], r["segm"]
    return (f"| {name} | {m['ap50']:.3f} | {m['ap']:.3f} | {m['ap75']:.3f} | {b['ap50']:.3f} | {b['ap']:.3f} | "
            f"{b['ap75']:.3f} | {r['iterations']} | {r['train_s'] / 60:.1f} |")


def write_report(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "instance_train.json").write_text(json.dumps(report, indent=1) + "\n")
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
    path = out_dir / "instance_train.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=MASKRCNN_RECIPE.iterations, help="Mask R-CNN steps")
    p.add_argument("--seeds", default="0", help="Mask R-CNN seeds, comma-separated (the first is the headline)")
    p.add_argument("--unet-iterations", type=int, default=UNET_RECIPE.iterations)
    p.add_argument("--work-dir", default="runs/instance_train")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    p.add_argument("--render", action="store_true", help="only rewrite the markdown from the JSON in --out")
    a = p.parse_args()
    if a.render:
        saved = json.loads((Path(a.out) / "instance_train.json").read_text())
        saved.setdefault("oracle_cc", {k: asdict(v) for k, v in oracle_components().items()})
        print(write_report(saved, Path(a.out)).read_text())
        return
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    val = get_dataset("nuclei", "val")
    report: dict = {"date": time.strftime("%Y-%m-%d"), "machine": _machine(), "val_crops": len(val),
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
