"""Mask R-CNN end to end on the CPU: PyTorch eager against ONNX Runtime on both export flavours, stage by stage.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/instance_bench.py [--models a,b] [--size 512]
        [--repeats 5,maskrcnn_resnet50_fpn=3] [--out benchmarks/results]

Four variants per model, timed round-robin in one process after warm-up (``edgeseg.bench.time_callables``):
``torchvision eager`` (torchvision's own eval pipeline on the same weights, ``paste_masks_in_image`` included: the
baseline the ORT goal is quoted against), ``edgeseg eager`` (``MaskRCNN.detect``, the fixed-size pipeline that is
exported) and ``ORT portable`` / ``ORT tensorrt`` (the two export flavours; the tensorrt one's plugin nodes run
through libedgeseg_ort.so). Stages: ONNX Runtime's by graph cuts (``edgeseg.bench.stage_times``, as
``edgeseg bench --profile --stages``), eager's by module hooks on torchvision's pipeline
(``torchvision_maskrcnn_stage_times``).
Random weights, seed 0: latency does not depend on them, and every image fills all D = 100 detection slots.
Writes ``<out>/<name>.{json,md}`` after every model (a stopped run keeps what it measured).
"""
from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

from edgeseg.bench import set_timing_environment

set_timing_environment()  # before torch and onnxruntime start their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402  (before any export starts: dynamo needs torchvision's ONNX functions)

from edgeseg.bench import (goal_lines, load_note, loadavg, machine, machine_line, profile_variant,  # noqa: E402
                           stage_times, summarize, table, time_callables, write_json_markdown)
from edgeseg.bench.report import notes_markdown, stages_side_by_side  # noqa: E402
from edgeseg.bench.driver import bench_log, driver_parser, per_model, run_models  # noqa: E402
from edgeseg.bench.profile import INSTANCE_STAGES, REST_STAGE, torchvision_maskrcnn_stage_times  # noqa: E402
from edgeseg.export import export_onnx  # noqa: E402
from edgeseg.metrics.instance import match_detections  # noqa: E402
from edgeseg.models import create  # noqa: E402
from edgeseg.models.detection.maskrcnn import torchvision_pipeline  # noqa: E402
from edgeseg.runtime import open_session  # noqa: E402

LABELS = {"torchvision_eager": "PyTorch eager, torchvision pipeline", "edgeseg_eager": "PyTorch eager, edgeseg detect",
          "ort_portable": "ONNX Runtime, portable", "ort_tensorrt": "ONNX Runtime, tensorrt flavour"}
STAGES, GOAL = (*INSTANCE_STAGES, REST_STAGE), 1.3
NOTES = [
    "Random weights fill all D = 100 detection slots at torchvision's 0.05 score threshold: the post-processing runs "
    "at full size (1000 proposals through the box head, 100 detections through the mask head and the paste), a worst "
    "case for the heads. The scores seen are in the JSON (min_score/max_score).",
    "edgeseg eager = MaskRCNN.detect with the PyTorch reference ops (RoIAlign as dense interpolation matrices): the "
    "oracle that is exported, not a deployment path.",
    "ONNX Runtime stages are graph cuts (edgeseg.bench.profile.instance_stage_cuts): each stage a graph of its own, "
    "timed chained in rounds alongside the whole graph; 'box head' includes box decoding, the class-wise NMS and the "
    "top-k, 'paste' the class channel pick and the sigmoid. What the sum exceeds the run by is the cost of the cuts. "
    "Eager stages are the same cut through torchvision's modules (box head = RoI heads less the RoIAligns and mask head).",
    "Timed with freed memory kept in the process (edgeseg.bench.timing.freed_memory_kept). With glibc's defaults, on "
    "the same machine 15 minutes earlier, edgeseg eager took 6.3 s (R18) and 13.0 s (R50) per image instead of 1.1 and "
    "1.3 s: its ~1 GB RoIAlign temporaries were paged in from the host again every round "
    "(benchmarks/results/memory_return_cpu.md). A first timed round can still pay it (times_ms in the JSON).",
]


log = bench_log("instance_bench")


def bench_one(name: str, size: int, num_classes: int, warmup: int, repeats: int, profile_runs: int, work: Path) -> dict:
    load_before = loadavg()
    torch.manual_seed(0)
    model = create(name, num_classes=num_classes, in_channels=3).eval()
    net, batch = model.net, np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    x, export_s, sessions = torch.from_numpy(batch), {}, {}
    for flavour in ("portable", "tensorrt"):
        log(f"{name}: exporting the {flavour} flavour")
        t = time.perf_counter()
        export_onnx(model, work / f"{name}_{flavour}.onnx", flavour=flavour)
        export_s[flavour] = time.perf_counter() - t
        sessions[f"ort_{flavour}"] = open_session(work / f"{name}_{flavour}.onnx", "onnxruntime")

    def tv():
        with torch.inference_mode():
            return torchvision_pipeline(net, x)

    def es():
        with torch.inference_mode():
            return model.detect(x)

    log(f"{name}: timing round-robin, {warmup} warm-up + {repeats} rounds")
    times = time_callables({"torchvision_eager": tv, "edgeseg_eager": es,
                            **{v: functools.partial(s.run, batch) for v, s in sessions.items()}}, warmup, repeats)
    ref = tv()[0]  # what each variant returned (same weights, same input), matched to torchvision's detections
    ref_boxes, ref_scores, ref_labels = (ref[k].numpy() for k in ("boxes", "scores", "labels"))
    outputs = {"torchvision_eager": {"boxes": ref_boxes[None], "scores": ref_scores[None], "labels": ref_labels[None],
                                     "num_detections": [len(ref_boxes)]},
               "edgeseg_eager": {k: v.numpy() for k, v in es().items()}, **{v: s.run(batch) for v, s in sessions.items()}}
    rows, stats = [], summarize(times, "torchvision_eager")
    for v, out in outputs.items():
        k, scores = int(out["num_detections"][0]), out["scores"][0, :int(out["num_detections"][0])]
        matched = match_detections(ref_boxes, ref_scores, ref_labels, out["boxes"][0, :k], out["labels"][0, :k],
                                   min_iou=0.99)
        st = stats[v]
        rows.append({"variant": v, "label": LABELS[v], **{f: st[f] for f in ("median_ms", "p90_ms", "runs", "times_ms")},
                     "speedup_vs_torchvision_eager": st["speedup"], "speedup_vs_torchvision_eager_paired": st["speedup_paired"],
                     "speedup_vs_edgeseg_eager": stats["edgeseg_eager"]["median_ms"] / stats[v]["median_ms"],
                     "num_detections": k, "matched_to_torchvision": len(matched.pairs),
                     "min_score": float(scores.min()) if k else None, "max_score": float(scores.max()) if k else None})
    log(f"{name}: stages (eager hooks, ORT graph cuts) and ORT op profiles, {profile_runs} runs")
    eager = torchvision_maskrcnn_stage_times(net, x, profile_runs)
    staged = {v[4:]: {**stage_times(s, batch, warmup, profile_runs),
                      "op_types": profile_variant(s, batch, warmup, profile_runs, top=6)["op_types"]}
              for v, s in sessions.items()}
    return {"model": name, "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6, "warmup": warmup,
            "repeats": repeats, "profile_runs": profile_runs, "export_s": export_s, "max_detections": model.max_detections,
            "proposals": net.rpn._post_nms_top_n["testing"], "score_thresh": net.roi_heads.score_thresh,
            "variants": rows, "eager_stages_ms": eager, "ort_stages": staged,
            "loadavg_before": load_before, "loadavg_after": loadavg()}


def markdown(report: dict) -> str:
    s, models = report["size"], report["models"]
    lines = [f"# Mask R-CNN end to end on the CPU, 1×3×{s}×{s}", "",
             machine_line(report["machine"], f"torchvision {report['torchvision']}, ")
             + ", ORT session.intra_op.allow_spinning=0.",
             f"Random weights (seed 0), num_classes={report['num_classes']} (background + {report['num_classes'] - 1}), "
             "input N(0, 1) seed 0. Latency per image, median and p90 over round-robin rounds after warm-up, all four "
             "variants in one process; speed-up = torchvision eager median / this median (in brackets: the median of "
             "the per-round ratios).", "",
             load_note([(r["model"], r["loadavg_before"], r["loadavg_after"]) for r in models]), ""]
    lines += table(["model", "variant", "median ms", "p90 ms", "runs", "speed-up vs torchvision eager", "vs edgeseg eager",
                    "detections", "matched to torchvision (IoU ≥ 0.99)"],
                   [[r["model"], v["label"], f"{v['median_ms']:.0f}", f"{v['p90_ms']:.0f}", v["runs"],
                     f"{v['speedup_vs_torchvision_eager']:.2f}× ({v['speedup_vs_torchvision_eager_paired']:.2f}×)", f"{v['speedup_vs_edgeseg_eager']:.2f}×",
                     v["num_detections"], v["matched_to_torchvision"]] for r in models for v in r["variants"]], 2)
    lines += ["", f"Goal: ONNX Runtime end to end ≥ {GOAL}× PyTorch eager (torchvision's pipeline, post-processing included)."]
    lines += goal_lines([(f"{r['model']}, {v['label']}", v["speedup_vs_torchvision_eager"],
                          v["speedup_vs_torchvision_eager"] >= GOAL)
                         for r in models for v in r["variants"] if v["variant"].startswith("ort_")])
    for r in models:
        e, st = r["eager_stages_ms"], r["ort_stages"]
        lines += ["", f"## {r['model']}: where the time goes", "",
                  f"ONNX Runtime: graph cuts, median of {r['profile_runs']} rounds after {r['warmup']} warm-up (ms per "
                  f"image and % of the whole graph's run, timed in the same rounds); eager: torchvision's pipeline timed "
                  f"per stage with module hooks, median of {r['profile_runs']} runs.", ""]
        lines += stages_side_by_side({"eager": {"ms": e, "sum_ms": sum(e[k] for k in STAGES), "run_ms": e["total"]},
                                      **{f"ORT {f}": {"ms": {x["stage"]: x["ms"] for x in st[f]["stages"]}, "share": True,
                                                      "sum_ms": st[f]["sum_ms"], "run_ms": st[f]["run_ms"]} for f in st}}, STAGES)
        for f in st:
            top = ", ".join(f"{o['op']} {o['ms']:.0f}" for o in st[f]["op_types"])
            lines.append(f"\nORT {f}, costliest op types (ms, ONNX Runtime's profiler): {top}.")
    lines += notes_markdown(report["notes"], report["not_measured"])
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = driver_parser(__doc__, ("maskrcnn_resnet18_fpn", "maskrcnn_resnet50_fpn"), Path(__file__).resolve().parent / "results")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--num-classes", type=int, default=3, help="counting the background (torchvision's convention)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", default="5,maskrcnn_resnet50_fpn=3",
                    help="timed rounds: a default and per-model overrides (R50 costs ~3x R18 per round)")
    ap.add_argument("--profile-runs", type=int, default=5,
                    help="rounds of the stage timings and ORT op profiles (with 2, one slow round skewed the medians 4-7x)")
    ap.add_argument("--name", default="instance_cpu")
    a = ap.parse_args()
    repeats = per_model(a.repeats, 5)
    header = {"machine": machine(), "torchvision": torchvision.__version__, "size": a.size, "batch": 1,
              "num_classes": a.num_classes, "notes": list(NOTES)}
    with tempfile.TemporaryDirectory() as tmp:
        report = run_models(a, a.name, header, lambda name: bench_one(name, a.size, a.num_classes, a.warmup, repeats(name),
                                                                        a.profile_runs, Path(tmp)),
                            lambda r: write_json_markdown(r, a.out, a.name, markdown(r)), log, keep_going=False)
    print(markdown(report))


if __name__ == "__main__":
    main()
