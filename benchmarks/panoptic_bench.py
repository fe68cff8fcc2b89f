"""Panoptic models end to end on the CPU at 512²: PyTorch eager against ONNX Runtime on both export flavours,
the panoptic merge's share of the time, and PQ per precision beside latency.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/panoptic_bench.py [--models a,b] [--steps lpsnet_resnet18=150,...]
        [--repeats 5] [--no-train] [--work-dir runs/panoptic_bench] [--out benchmarks/results]

Per model, round-robin in one process after warm-up (``edgeseg.bench.time_callables``): PyTorch eager, ONNX Runtime on
the portable and tensorrt flavours (plugin nodes through libedgeseg_ort.so), FP16 and INT8 of the portable graph
(``edgeseg.bench.variant_file``), and the eager merge alone (``panoptic_merge`` on the tensors the model handed it).
ONNX Runtime's merge: the graph cut into network and merge (``edgeseg.bench.stage_times``, as
``edgeseg bench --profile --stages``), timed alongside the whole graph. Input: the real 512² nuclei image (1 channel).
The R18 models are trained on nuclei with ``panoptic_train.py``'s recipes (fewer steps: ``--steps``); PQ per precision
on the 7 held-out 128² crops, latency at 128² beside it. LPSNet-R50 and the InternImage DeepLab have random weights;
the DeepLab is semantic (no merge, no PQ). Writes ``<out>/panoptic_cpu.{json,md,png}`` after every model.
"""
from __future__ import annotations

import functools
import sys
import time
from dataclasses import replace
from pathlib import Path

from edgeseg.bench import set_timing_environment

set_timing_environment()  # before torch and onnxruntime start their thread pools

import torch  # noqa: E402
import torchvision  # noqa: E402,F401  (before any export: dynamo needs torchvision's ONNX functions)

from edgeseg.bench import (accuracy, goal_lines, load_note, loadavg, machine, machine_line, stage_times,  # noqa: E402
                           summarize, table, time_callables, variant_file, write_json_markdown)
from edgeseg.bench.driver import bench_log, driver_parser, per_model, reason, run_models, trained  # noqa: E402
from edgeseg.bench.report import notes_markdown, written_by  # noqa: E402
from edgeseg.bench.run import zoo_model  # noqa: E402
from edgeseg.bench.workload import catch_call, spread_outputs  # noqa: E402
from edgeseg.data import get_dataset  # noqa: E402
from edgeseg.data.nuclei import load_image_and_instances  # noqa: E402
from edgeseg.export import export_onnx  # noqa: E402
from edgeseg.models.checkpoint import load_checkpoint  # noqa: E402
from edgeseg.runtime import open_session  # noqa: E402
from edgeseg.runtime.prepost import preprocess  # noqa: E402

from edgeseg.recipes import PANOPTIC_RECIPES as RECIPES  # noqa: E402

HERE = Path(__file__).resolve().parent

MODELS = ("lpsnet_resnet18", "panoptic_fpn_resnet18", "lpsnet_resnet50", "deeplabv3plus_internimage_cpu")
LABELS = {"torch": "PyTorch eager", "ort_portable": "ORT portable FP32", "ort_tensorrt": "ORT tensorrt-flavour FP32",
          "ort_portable_fp16": "ORT portable FP16", "ort_portable_int8": "ORT portable INT8"}
GOAL_SPEEDUP, GOAL_SHARE, CALIBRATION_CROPS = 1.3, 5.0, 8  # GOAL_SHARE: % of end-to-end time
STEPS = {"lpsnet_resnet18": 150, "panoptic_fpn_resnet18": 120}  # panoptic_train.py trains 200
FIXED_NOTES = [
    "The R18 models' weights: `benchmarks/panoptic_train.py`'s recipes, trained here for fewer steps than its 200 "
    "(the step count is in the weights column), so their PQ differs from that report's.",
    "LPSNet-R50 has random weights with its class and border-ness logits spread to a standard deviation of 3 on this "
    "image (random heads score every location alike, under the thresholds): the merge then gets a full or nearly full "
    "detection table, a worst case for it.",
    "The InternImage DeepLab is the `deeplabv3plus_internimage_cpu` configuration, not -T (whose export takes more than "
    "15 minutes here); random weights, semantic only: no merge, no PQ, latency only.",
    "The merge (`panoptic_merge`) takes the D = 100 detections' boxes and, for Panoptic FPN, the mask head's "
    "100×28×28 masks (LPSNet: each box's pixels of its class in the semantic map). Eager and the portable graph paste "
    "them into 100 full-image masks and loop over them (`panoptic_paste`); the tensorrt flavour's EdgeSegPanopticMerge "
    "node pastes inside one C++ kernel and never builds the full-image masks.",
    "ONNX Runtime's merge ms is the merge stage of the model's own graph cut at the merge (median of the rounds that "
    "time the stages chained, alongside the whole graph); its share is of that graph's run in the same rounds. "
    "LPSNet's instance masks count in the network.",
]


log = bench_log("panoptic_bench")


def bench_one(name: str, a, work: Path, notes: list[str]) -> dict:
    load_before, (img, _) = loadavg(), load_image_and_instances()
    is_trained, steps = name in RECIPES, a.steps(name)
    if is_trained:
        ckpt = trained(replace(RECIPES[name], iterations=steps), work / f"{name}_{steps}.pt", not a.no_train, log)
        model, payload = load_checkpoint(ckpt)
        if payload.get("train_state", {}).get("iteration", 0) < steps:  # written every epoch: a partial one is not it
            raise RuntimeError(f"{ckpt} holds fewer than {steps} steps (training still running, or stopped)")
        torch_session, tag = open_session(ckpt, "torch"), f"trained{steps}"
    else:
        model, meta = zoo_model(name, "nuclei")
        torch_session, tag = open_session(model, "torch", meta=meta), "random"
    meta = torch_session.meta
    batch = preprocess(img[None], meta)[0]  # 1×1×512×512, normalised as the nuclei data set is
    x, panoptic = torch.from_numpy(batch), getattr(model, "task", "semantic") == "panoptic"
    if not is_trained and name.startswith("lpsnet"):  # random heads: spread their logits so the merge gets detections
        spread_outputs([model.box_head.cls, model.box_head.border], lambda: model.eval()(x))
    files, sessions = {}, {"torch": torch_session}
    calibration = [preprocess(get_dataset("nuclei", "train").raw(i)[0], meta)[0] for i in range(CALIBRATION_CROPS)]
    for v in ("ort_portable", "ort_tensorrt", "ort_portable_fp16", "ort_portable_int8"):
        try:
            if v in ("ort_portable", "ort_tensorrt"):  # exported once into --work-dir, FP16/INT8 derived from portable
                files[v] = work / f"{name}_{tag}_{v[4:]}.onnx"
                if not files[v].is_file():
                    log(f"{name}: exporting the {v[4:]} flavour")
                    export_onnx(model.eval(), files[v], meta=meta, flavour=v[4:], sample=x)
            else:
                files[v] = variant_file(files["ort_portable"], "onnxruntime", v[-4:], calibration, "minmax")
            if not a.export_only:
                sessions[v] = open_session(files[v])
        except Exception as e:  # noqa: BLE001  the report says why, the run goes on
            notes.append(f"{name}: {LABELS[v]} not made or not loaded ({reason(e)})")
            log(notes[-1])
    if a.export_only:
        return {}
    fns = {v: functools.partial(s.run, batch) for v, s in sessions.items()}
    detections = None
    if panoptic:  # panoptic_merge alone, on what the model hands it for x
        fns["merge_torch"], args, _ = catch_call(sys.modules[type(model).__module__], "panoptic_merge", lambda: model.eval()(x))
        detections = int((args[2] > 0).sum())  # the filled detection slots
    log(f"{name}: timing {', '.join(fns)} at 512², {a.warmup} warm-up + {a.repeats} rounds")
    stats = summarize(time_callables(fns, a.warmup, a.repeats), "torch")
    merged = {"torch": (stats["merge_torch"]["median_ms"], stats["torch"]["median_ms"])} if panoptic else {}
    for v in ("ort_portable", "ort_tensorrt") if panoptic else ():
        if v in sessions:  # the merge cut out of the model's own graph
            st = stage_times(sessions[v], batch, a.warmup, a.repeats)
            merged[v] = (next(s["ms"] for s in st["stages"] if s["stage"] == "merge"), st["run_ms"])
    pq, stats_128 = {}, {}
    if is_trained and panoptic:  # 128² (a held-out crop) and PQ per precision: trained panoptic models only
        val = get_dataset("nuclei", "val")
        small = preprocess(val.raw(0)[0], meta)[0]
        stats_128 = summarize(time_callables({v: functools.partial(s.run, small) for v, s in sessions.items()},
                                             a.warmup, a.repeats * 2), "torch")
        for v, s in sessions.items():
            log(f"{name}: PQ of {LABELS[v]}")
            try:
                r = accuracy(s, val, detail=True)
                pq[v] = {**r["pq_detail"], "semantic_miou": r["miou"]}
            except Exception as e:  # noqa: BLE001
                notes.append(f"{name}: {LABELS[v]} not scored ({reason(e)})")
    rows = []
    for v in (v for v in LABELS if v in sessions):
        row = {"variant": v, "label": LABELS[v], **{k: stats[v][k] for k in ("median_ms", "p90_ms", "runs", "times_ms")},
               "speedup_vs_torch": stats[v]["speedup"], "speedup_vs_torch_paired": stats[v]["speedup_paired"],
               "model_mb": round(files[v].stat().st_size / 1e6, 2) if v in files else None}
        if v in merged:
            row.update(merge_median_ms=merged[v][0], merge_share_pct=100 * merged[v][0] / merged[v][1])
        if v in stats_128:
            row.update(median_ms_128=stats_128[v]["median_ms"], p90_ms_128=stats_128[v]["p90_ms"],
                       speedup_vs_torch_128=stats_128[v]["speedup"])
        rows.append({**row, **({"pq": pq[v]} if v in pq else {})})
    return {"model": name, "weights": f"trained {steps} steps on nuclei" if is_trained else "random (seed 0)",
            "task": "panoptic" if panoptic else "semantic", "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "detections_to_merge": detections, "warmup": a.warmup, "repeats": a.repeats, "command": " ".join(sys.argv),
            "variants": rows, "loadavg_before": load_before, "loadavg_after": loadavg()}


def markdown(report: dict) -> str:
    models = report["models"]
    lines = ["# Panoptic models end to end on the CPU, 1×1×512×512", "",
             machine_line(report["machine"]) + ", ORT session.intra_op.allow_spinning=0. "
             + written_by(report, "benchmarks/panoptic_bench.py"),
             "Input: the real 512² nuclei image (1 channel, batch 1). Latency per image, median and p90 over round-robin "
             "rounds after warm-up, every variant of a model in one process; speed-up = PyTorch eager median / this median "
             "(in brackets: the median of the per-round ratios). Merge = `panoptic_merge`: eager, alone on the tensors the "
             "model handed it, in the same rounds; ONNX Runtime, the merge stage of the graph cut at it. Share = merge / "
             "end-to-end of the same backend, for the FP32 variants.", "",
             load_note([(r["model"], r["loadavg_before"], r["loadavg_after"]) for r in models]), ""]
    lines += table(["model", "weights", "variant", "median ms", "p90 ms", "speed-up vs eager", "merge ms", "merge share"],
                   [[r["model"], r["weights"], v["label"], f"{v['median_ms']:.0f}", f"{v['p90_ms']:.0f}",
                     f"{v['speedup_vs_torch']:.2f}× ({v['speedup_vs_torch_paired']:.2f}×)",
                     *((f"{v['merge_median_ms']:.1f}", f"{v['merge_share_pct']:.1f} %") if "merge_share_pct" in v
                       else ("–", "–"))] for r in models for v in r["variants"]], 3)
    scored = [(r, v) for r in models for v in r["variants"] if "pq" in v]
    if scored:
        lines += ["", "## PQ per precision (nuclei, 7 held-out 128² crops) beside latency", "",
                  "Latency at 128²: the first held-out crop, round-robin as above; at 512²: the table above.", ""]
        lines += table(["model", "variant", "PQ", "SQ", "RQ", "PQ things", "PQ stuff", "semantic mIoU", "median ms 128²",
                        "p90 ms 128²", "speed-up 128²", "median ms 512²"],
                       [[r["model"], v["label"], *(f"{v['pq'][k]:.3f}" for k in ("pq", "sq", "rq", "pq_things", "pq_stuff",
                                                                                 "semantic_miou")),
                         *((f"{v['median_ms_128']:.1f}", f"{v['p90_ms_128']:.1f}", f"{v['speedup_vs_torch_128']:.2f}×")
                           if "median_ms_128" in v else ("–",) * 3), f"{v['median_ms']:.0f}"] for r, v in scored], 2)
    lines += ["", "## Goals", "", f"Panoptic merge under {GOAL_SHARE:g} % of end-to-end time:"]
    rows = [(f"{r['model']}, {v['label']}", v) for r in models for v in r["variants"]]
    lines += goal_lines([(w, v["merge_share_pct"], v["merge_share_pct"] < GOAL_SHARE) for w, v in rows
                         if "merge_share_pct" in v], unit=" %")
    lines += ["", f"ONNX Runtime end to end ≥ {GOAL_SPEEDUP}× PyTorch eager (512²):"]
    lines += goal_lines([(w, v["speedup_vs_torch"], v["speedup_vs_torch"] >= GOAL_SPEEDUP) for w, v in rows
                         if v["variant"] != "torch"])
    lines += notes_markdown([f"{r['model']}: {r['detections_to_merge']} filled detection slots reach the merge on this "
                             "image." for r in models if r["detections_to_merge"] is not None]
                            + [f"{n}." for n in report["notes"]] + FIXED_NOTES, report.get("not_measured"))
    return "\n".join(lines) + "\n"


def write(report: dict, out: Path) -> None:
    """JSON and markdown, and PQ against latency at 128² (``edgeseg.viz.pareto_plot``) where a model was scored."""
    from edgeseg.viz import pareto_plot

    write_json_markdown(report, out, "panoptic_cpu", markdown(report))
    points = [{"model": r["model"], "backend": "torch" if v["variant"] == "torch" else "onnxruntime",
               "precision": v["variant"].rsplit("_", 1)[1] if v["variant"].count("_") > 1 else "fp32",
               "latency_ms_median": v["median_ms_128"], "accuracy": v["pq"]["pq"], "accuracy_metric": "PQ"}
              for r in report["models"] for v in r["variants"] if "pq" in v and v["variant"] != "ort_tensorrt"]
    if points:
        pareto_plot(points, out / "panoptic_cpu.png", "Panoptic models on the CPU: PQ against latency per 128² crop")


def main() -> None:
    p = driver_parser(__doc__, MODELS, HERE / "results")
    p.add_argument("--steps", default="", help="training steps of the R18 models (panoptic_train recipe), name=steps,...")
    p.add_argument("--no-train", action="store_true", help="refuse to train: the checkpoints must be in --work-dir")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--export-only", action="store_true", help="make the ONNX files in --work-dir and stop")
    p.add_argument("--work-dir", default="runs/panoptic_bench")
    a = p.parse_args()
    a.steps = per_model(",".join(f"{k}={v}" for k, v in STEPS.items()) + "," + a.steps, None)
    work = Path(a.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    header = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "machine": machine(), "notes": []}
    run_models(a, "panoptic_cpu", header, lambda name: bench_one(name, a, work, header["notes"]),
               lambda r: None if a.export_only else write(r, Path(a.out)), log, order=MODELS)


if __name__ == "__main__":
    main()
