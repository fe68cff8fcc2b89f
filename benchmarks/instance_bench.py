"""Mask R-CNN end to end on the CPU: PyTorch eager against ONNX Runtime on both export flavours, with
per-stage breakdowns.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/instance_bench.py [--models a,b] [--size 512]
        [--repeats 5,maskrcnn_resnet50_fpn=3] [--out benchmarks/results]

Four variants per model, timed round-robin in one process after warm-up (one run of each per round):

- ``torchvision eager``: torchvision's own eval pipeline on the same weights (backbone, RPN, RoI heads,
  ``transform.postprocess`` = ``paste_masks_in_image``; no resize transform), post-processing included.
  This is the baseline the ORT goal is quoted against.
- ``edgeseg eager``: ``MaskRCNN.detect``, the fixed-size in-graph pipeline that is exported, in eager.
- ``ORT portable`` / ``ORT tensorrt``: ``open_session`` on the two exported flavours (the tensorrt
  flavour runs its edgeseg plugin nodes through libedgeseg_ort.so).

The breakdowns: ONNX Runtime's profiler on a separate session of each flavour (same options, profiling
on), node times grouped into stages by the dataflow of the optimised graph ORT runs (saved with
``optimized_model_filepath``, so profiled node names are the graph's): every stage is the set of nodes a
cut tensor depends on, minus the earlier stages (``edgeseg.bench.profile.instance_stage_cuts``). The eager breakdown times
torchvision's pipeline stage by stage (module hooks). Writes ``<out>/instance_cpu.{json,md}`` after every
model (a stopped run keeps what it measured). Random weights, seed 0: latency does not depend on them,
and with them every image already fills all D = 100 detection slots (recorded as num_detections).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402  (before any export starts: dynamo needs torchvision's ONNX functions)
from torchvision.models.detection.image_list import ImageList  # noqa: E402
from edgeseg.models.detection.maskrcnn import torchvision_pipeline  # noqa: E402

from edgeseg.bench import time_callables  # noqa: E402
from edgeseg.bench.profile import INSTANCE_STAGES, REST_STAGE, Dataflow, instance_stage_cuts  # noqa: E402
from edgeseg.export import export_onnx  # noqa: E402
from edgeseg.io import write_text_atomic  # noqa: E402
from edgeseg.metrics.instance import match_detections  # noqa: E402
from edgeseg.models import create  # noqa: E402
from edgeseg.runtime import open_session  # noqa: E402
from edgeseg.sysinfo import machine_info  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = ("maskrcnn_resnet18_fpn", "maskrcnn_resnet50_fpn")
FLAVOURS = ("portable", "tensorrt")
VARIANTS = ("torchvision_eager", "edgeseg_eager", "ort_portable", "ort_tensorrt")
LABELS = {"torchvision_eager": "PyTorch eager, torchvision pipeline", "edgeseg_eager": "PyTorch eager, edgeseg detect",
          "ort_portable": "ONNX Runtime, portable", "ort_tensorrt": "ONNX Runtime, tensorrt flavour"}
STAGES = (*INSTANCE_STAGES, REST_STAGE)
GOAL = 1.3
NOTES = [
    ("Random weights already fill all D = 100 detection slots: torchvision's 0.05 score threshold is left as it is "
     "(lowering it changes nothing once every slot is full), so the post-processing runs at full size: 1000 "
     "proposals through the box head, 100 detections through the mask head and the paste — a worst case for the "
     "heads. The scores seen are in the JSON (min_score/max_score)."),
    ("edgeseg eager = MaskRCNN.detect with the PyTorch reference ops (RoIAlign as dense interpolation matrices, cost "
     "∝ boxes·C·H·W): the oracle that is exported, not a deployment path."),
    ("Stages in the ONNX Runtime tables come from the dataflow of the optimised graph ORT runs, cut at the RoIAlign "
     "inputs/outputs, the first box-head Gemm, the first and last mask-head Conv and the masks output; 'box head' "
     "includes box decoding, the class-wise NMS and the top-k; 'paste' includes picking each detection's class "
     "channel and the sigmoid. Eager stages are the same cut through torchvision's modules."),
]


def log(msg: str) -> None:
    print(f"[instance_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    try:
        with open("/proc/loadavg") as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return []


# --- eager -----------------------------------------------------------------------------------------


def eager_stages(net, x, runs: int) -> dict[str, float]:
    """ms per stage of ``torchvision_pipeline`` (median over ``runs``), timed with module hooks."""
    heads = net.roi_heads
    timed = {"backbone + FPN": [net.backbone], "RPN + NMS (proposals)": [net.rpn], "RoIAlign (box)": [heads.box_roi_pool],
             "RoIAlign (mask)": [heads.mask_roi_pool], "mask head": [heads.mask_head, heads.mask_predictor],
             "roi_heads": [heads]}
    acc: dict[str, float] = defaultdict(float)
    handles = []
    for stage, modules in timed.items():
        for m in modules:
            start: list[float] = []
            handles.append(m.register_forward_pre_hook(lambda *_, s=start: s.append(time.perf_counter())))
            handles.append(m.register_forward_hook(
                lambda *_, s=start, k=stage: acc.__setitem__(k, acc[k] + (time.perf_counter() - s.pop()) * 1000)))
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        with torch.inference_mode():
            for _ in range(runs):
                acc.clear()
                t0 = time.perf_counter()
                sizes = [tuple(x.shape[-2:])] * x.shape[0]
                features = net.backbone(x)
                proposals, _ = net.rpn(ImageList(x, sizes), features)
                dets, _ = heads(features, proposals, sizes)
                t1 = time.perf_counter()
                net.transform.postprocess(dets, sizes, sizes)
                t2 = time.perf_counter()
                acc["paste"] = (t2 - t1) * 1000
                total = (t2 - t0) * 1000
                box = acc["roi_heads"] - acc["RoIAlign (box)"] - acc["RoIAlign (mask)"] - acc["mask head"]
                row = {**{k: v for k, v in acc.items() if k != "roi_heads"}, "box head + detection NMS": box}
                row["other"] = total - sum(row.values())
                for k, v in row.items():
                    samples[k].append(v)
                samples["total"].append(total)
    finally:
        for h in handles:
            h.remove()
    return {k: float(np.median(samples[k])) for k in (*STAGES, "total")}


# --- ONNX Runtime profile --------------------------------------------------------------------------


def node_stages(graph: onnx.GraphProto) -> dict[str, str]:
    """node name -> stage, by ``edgeseg.bench``'s Mask R-CNN cuts on the graph ORT optimised."""
    flow = Dataflow(graph)
    assigned: dict[int, str] = {}
    for stage, cut in instance_stage_cuts(graph).items():
        for i in flow.ancestors(cut):
            assigned.setdefault(i, stage)
    return {n.name: assigned.get(i, "other") for i, n in enumerate(graph.node)}


def ort_profile(path: Path, batch: np.ndarray, warmup: int, runs: int, workdir: Path) -> dict:
    """Stage, op-type and total times (ms per run, mean over ``runs`` after ``warmup``) from ORT's profiler,
    on a session with the benchmark sessions' options plus profiling."""
    import onnxruntime as ort

    from edgeseg.export.plugins import plugin_nodes
    from edgeseg.ops.native import library_path
    from edgeseg.runtime.onnxruntime_backend import session_options

    proto = onnx.load(str(path))
    libs = (str(library_path("libedgeseg_ort.so")),) if plugin_nodes(proto) else ()
    so = session_options(None, libs)
    so.enable_profiling = True
    so.profile_file_prefix = str(workdir / f"{path.stem}_profile")
    optimized = workdir / f"{path.stem}_ort_optimized.onnx"
    so.optimized_model_filepath = str(optimized)
    session = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    del proto
    name = session.get_inputs()[0].name
    for _ in range(warmup + runs):
        session.run(None, {name: batch})
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    graph = onnx.load(str(optimized), load_external_data=False).graph
    optimized.unlink()
    stage_of = node_stages(graph)
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    windows = windows[warmup:]
    stages: dict[str, float] = defaultdict(float)
    ops: dict[str, float] = defaultdict(float)
    stage_ops: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    unmatched = 0.0
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        if not any(a <= e["ts"] <= b for a, b in windows):
            continue
        node = e.get("args", {}).get("node_name") or e["name"][: -len("_kernel_time")]
        op = e.get("args", {}).get("op_name", "?")
        ms = e["dur"] / 1000 / len(windows)
        stage = stage_of.get(node)
        if stage is None:
            unmatched += ms
            stage = "other"
        stages[stage] += ms
        ops[op] += ms
        stage_ops[stage][op] += ms
    run_ms = sum(b - a for a, b in windows) / 1000 / len(windows)
    kernels = sum(stages.values())
    return {
        "runs": len(windows), "run_ms": run_ms, "kernel_ms": kernels,
        "between_nodes_ms": run_ms - kernels,  # ORT's own work between kernels (allocation, scheduling)
        "unmatched_node_ms": unmatched,
        "stages_ms": {s: stages.get(s, 0.0) for s in STAGES},
        "stages_pct": {s: 100 * stages.get(s, 0.0) / run_ms for s in STAGES},
        "top_ops_ms": dict(sorted(ops.items(), key=lambda kv: -kv[1])[:12]),
        "stage_top_ops_ms": {s: dict(sorted(v.items(), key=lambda kv: -kv[1])[:4]) for s, v in stage_ops.items()},
    }


# --- one model ---------------------------------------------------------------------------------------


def bench_one(name: str, size: int, num_classes: int, warmup: int, repeats: int, profile_runs: int,
              workdir: Path) -> dict:
    load_before = loadavg()
    torch.manual_seed(0)
    model = create(name, num_classes=num_classes, in_channels=3).eval()
    net = model.net
    batch = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    x = torch.from_numpy(batch)
    files, export_s = {}, {}
    for flavour in FLAVOURS:
        files[flavour] = workdir / f"{name}_{flavour}.onnx"
        log(f"{name}: exporting the {flavour} flavour")
        t0 = time.perf_counter()
        export_onnx(model, files[flavour], flavour=flavour)
        export_s[flavour] = time.perf_counter() - t0
    sessions = {f"ort_{f}": open_session(files[f], "onnxruntime") for f in FLAVOURS}

    def tv():
        with torch.inference_mode():
            return torchvision_pipeline(net, x)

    def es():
        with torch.inference_mode():
            return model.detect(x)

    fns = {"torchvision_eager": tv, "edgeseg_eager": es,
           **{v: functools.partial(s.run, batch) for v, s in sessions.items()}}
    log(f"{name}: timing {', '.join(fns)} round-robin, {warmup} warm-up + {repeats} rounds")
    times = time_callables(fns, warmup, repeats, progress=False)

    # what each variant returned (same weights, same input): detection counts and agreement with torchvision
    ref = tv()[0]
    ref_boxes, ref_scores, ref_labels = (ref[k].numpy() for k in ("boxes", "scores", "labels"))
    outputs = {"edgeseg_eager": {k: v.numpy() for k, v in es().items()},
               **{v: s.run(batch) for v, s in sessions.items()}}
    detections = {"torchvision_eager": {"num_detections": len(ref_boxes), "matched_to_torchvision": len(ref_boxes),
                                        "min_score": float(ref_scores.min()) if len(ref_scores) else None,
                                        "max_score": float(ref_scores.max()) if len(ref_scores) else None}}
    for v, out in outputs.items():
        k = int(out["num_detections"][0])
        m = match_detections(ref_boxes, ref_scores, ref_labels, out["boxes"][0, :k], out["labels"][0, :k], min_iou=0.99)
        detections[v] = {"num_detections": k, "matched_to_torchvision": len(m.pairs),
                         "min_score": float(out["scores"][0, :k].min()) if k else None,
                         "max_score": float(out["scores"][0, :k].max()) if k else None}

    log(f"{name}: eager stage times (torchvision pipeline, {profile_runs} runs)")
    eager = eager_stages(net, x, profile_runs)
    sessions.clear()  # free the timed sessions before the profiled ones open
    fns.clear()
    breakdown = {}
    for flavour in FLAVOURS:
        log(f"{name}: ONNX Runtime profile of the {flavour} flavour ({warmup} + {profile_runs} runs)")
        breakdown[flavour] = ort_profile(files[flavour], batch, warmup, profile_runs, workdir)
        files[flavour].unlink()

    variants = []
    base = np.asarray(times["torchvision_eager"])
    base_es = np.asarray(times["edgeseg_eager"])
    for v in VARIANTS:
        t = np.asarray(times[v])
        variants.append({
            "variant": v, "label": LABELS[v], "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
            "runs": len(t), "times_ms": [float(a) for a in t],
            "speedup_vs_torchvision_eager": float(np.median(base) / np.median(t)),
            "speedup_vs_torchvision_eager_paired": float(np.median(base / t)),  # the median of per-round ratios
            "speedup_vs_edgeseg_eager": float(np.median(base_es) / np.median(t)),
            **detections[v]})
    return {"model": name, "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "warmup": warmup, "repeats": repeats, "profile_runs": profile_runs, "export_s": export_s,
            "max_detections": model.max_detections, "proposals": net.rpn._post_nms_top_n["testing"],
            "score_thresh": net.roi_heads.score_thresh,
            "variants": variants, "eager_stages_ms": eager, "ort_breakdown": breakdown,
            "loadavg_before": load_before, "loadavg_after": loadavg()}


# --- report ------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    m = report["machine"]
    s = report["size"]
    lines = [f"# Mask R-CNN end to end on the CPU, 1×3×{s}×{s}", "",
             (f"Machine: {m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); torch {m['torch']} "
             f"({m['torch_threads']} threads), torchvision {report['torchvision']}, onnxruntime {m['onnxruntime']}, "
             f"onnx {m['onnx']}, python {m['python']}, OMP_WAIT_POLICY={m['omp_wait_policy']}, ORT "
             "session.intra_op.allow_spinning=0."),
             (f"Random weights (seed 0), num_classes={report['num_classes']} (background + "
             f"{report['num_classes'] - 1}), input N(0, 1) seed 0. Latency per image, median and p90 over round-robin "
             "rounds after warm-up, all four variants in one process; speed-up = torchvision eager median / this "
             "median (in brackets: the median of the per-round ratios)."), ""]
    shared = [r for r in report["models"] if max(r["loadavg_before"][:1] + r["loadavg_after"][:1], default=0) > 2.5]
    if shared:
        lines += ["**The machine was shared during this run** (1-min load average above 2.5: "
                  + "; ".join(f"{r['model']} {r['loadavg_before'][0]:.1f} before, {r['loadavg_after'][0]:.1f} after"
                              for r in shared)
                  + "): absolute times are inflated and noisy; the ratios, measured side by side, less so.", ""]
    lines += [("| model | variant | median ms | p90 ms | runs | speed-up vs torchvision eager | vs edgeseg eager | "
              "detections | matched to torchvision (IoU ≥ 0.99) |"), "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["models"]:
        for v in r["variants"]:
            lines.append(f"| {r['model']} | {v['label']} | {v['median_ms']:.0f} | {v['p90_ms']:.0f} | {v['runs']} | "
                         f"{v['speedup_vs_torchvision_eager']:.2f}× ({v['speedup_vs_torchvision_eager_paired']:.2f}×) | "
                         f"{v['speedup_vs_edgeseg_eager']:.2f}× | {v['num_detections']} | {v['matched_to_torchvision']} |")
    lines += ["", (f"Goal: ONNX Runtime end to end ≥ {GOAL}× PyTorch eager (torchvision's pipeline, post-processing "
              "included).")]
    for r in report["models"]:
        for v in r["variants"]:
            if v["variant"].startswith("ort_"):
                met = "met" if v["speedup_vs_torchvision_eager"] >= GOAL else "NOT met"
                lines.append(f"- {r['model']}, {v['label']}: {v['speedup_vs_torchvision_eager']:.2f}× — {met}.")
    for r in report["models"]:
        lines += ["", f"## {r['model']}: where the time goes", "",
                  (f"ONNX Runtime profiler, mean of {r['ort_breakdown']['portable']['runs']} profiled runs after "
                  f"{r['warmup']} warm-up (ms per image and % of the run); eager: torchvision's pipeline timed per "
                  f"stage with module hooks, median of {r['profile_runs']} runs."), "",
                  "| stage | eager ms | ORT portable ms | % | ORT tensorrt ms | % |", "|---|---:|---:|---:|---:|---:|"]
        bp, bt, e = r["ort_breakdown"]["portable"], r["ort_breakdown"]["tensorrt"], r["eager_stages_ms"]
        for st in STAGES:
            lines.append(f"| {st} | {e[st]:.0f} | {bp['stages_ms'][st]:.0f} | {bp['stages_pct'][st]:.1f} | "
                         f"{bt['stages_ms'][st]:.0f} | {bt['stages_pct'][st]:.1f} |")
        lines.append(f"| between kernels (ORT) | – | {bp['between_nodes_ms']:.0f} | "
                     f"{100 * bp['between_nodes_ms'] / bp['run_ms']:.1f} | {bt['between_nodes_ms']:.0f} | "
                     f"{100 * bt['between_nodes_ms'] / bt['run_ms']:.1f} |")
        lines.append(f"| **run** | {e['total']:.0f} | {bp['run_ms']:.0f} | 100 | {bt['run_ms']:.0f} | 100 |")
        for flavour, b in (("portable", bp), ("tensorrt", bt)):
            top = ", ".join(f"{op} {ms:.0f}" for op, ms in list(b["top_ops_ms"].items())[:6])
            lines.append(f"\nORT {flavour}, costliest op types (ms): {top}.")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    if report.get("not_measured"):
        lines += ["", f"Not measured in this run: {', '.join(report['not_measured'])}."]
    return "\n".join(lines) + "\n"


def parse_repeats(text: str, models: list[str]) -> dict[str, int]:
    """``5`` or ``5,maskrcnn_resnet50_fpn=3``: a default count and per-model overrides."""
    default, per = 5, {}
    for part in filter(None, text.split(",")):
        name, eq, n = part.rpartition("=")
        if eq:
            per[name] = int(n)
        else:
            default = int(n)
    return {m: per.get(m, default) for m in models}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--num-classes", type=int, default=3, help="counting the background (torchvision's convention)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", default="5,maskrcnn_resnet50_fpn=3",
                    help="timed rounds: a default and per-model overrides (R50 costs ~3x R18 per round; the "
                         "default keeps the whole script near 13 minutes on 2 cores)")
    ap.add_argument("--profile-runs", type=int, default=2, help="profiled runs per ORT flavour and eager stage timing")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default="instance_cpu")
    a = ap.parse_args()
    models = a.models.split(",")
    repeats = parse_repeats(a.repeats, models)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine_info(), "torchvision": torchvision.__version__, "size": a.size, "batch": 1,
              "num_classes": a.num_classes, "models": [],
              "not_measured": list(models), "notes": list(NOTES)}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            row = bench_one(name, a.size, a.num_classes, a.warmup, repeats[name], a.profile_runs, Path(tmp))
            report["models"].append(row)
            report["not_measured"].remove(name)
            report["wall_s"] = time.perf_counter() - t_start
            write_text_atomic(out / f"{a.name}.json", json.dumps(report, indent=2) + "\n")
            write_text_atomic(out / f"{a.name}.md", markdown(report))
            log(f"{name}: done ({report['wall_s']:.0f} s so far); wrote {out / a.name}.{{json,md}}")
    print(markdown(report))


if __name__ == "__main__":
    main()
