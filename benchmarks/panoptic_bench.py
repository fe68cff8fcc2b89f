"""Panoptic models end to end on the CPU at 512²: PyTorch eager against ONNX Runtime on both export flavours,
the panoptic merge's share of the time, and PQ per precision beside latency.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/panoptic_bench.py [--models a,b] [--steps lpsnet_resnet18=150,...]
        [--repeats 5] [--no-train] [--work-dir runs/panoptic_bench] [--out benchmarks/results]

Per model, in one process, round-robin after warm-up (one run of each per round; ``edgeseg.bench.time_callables``):

- ``torch fp32``: the model in PyTorch eager (``open_session(model, "torch")``), the merge included.
- ``onnxruntime fp32 portable`` / ``tensorrt``: the two export flavours (the tensorrt flavour's plugin nodes run
  through libedgeseg_ort.so), and ``fp16`` / ``int8`` of the portable graph (``edgeseg.quant``; INT8 only in the
  convolutions and GEMMs, the merge stays FP32).
- the merge alone (``postprocess.panoptic_merge``) on the tensors the model handed it for this input: in eager,
  and as a graph of its own exported in each flavour and run in ONNX Runtime. Its share = merge median /
  end-to-end median of the same backend and flavour, timed in the same rounds.

Input: the real 512² nuclei image (stardist's DSB 2018 image, the nuclei data set's source; 1 channel), batch 1.
The R18 models are trained on nuclei with ``benchmarks/panoptic_train.py``'s recipes (fewer steps: ``--steps``),
so the merge gets the detections of a trained model; PQ per precision on the 7 held-out 128² crops, with the
latency at 128² (the first crop) beside it. LPSNet-R50 and the InternImage DeepLab have random weights (LPSNet's
class and border-ness logits spread so that detections pass its thresholds); the DeepLab is semantic (no merge,
no PQ). Writes ``<out>/panoptic_cpu.{json,md,png}`` after every model (a stopped run keeps what it measured).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch and onnxruntime start their thread pools

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402,F401  (before any export: dynamo needs torchvision's ONNX functions)

from edgeseg.bench import loadavg, machine, time_callables  # noqa: E402
from edgeseg.data import get_dataset  # noqa: E402
from edgeseg.data.nuclei import INFO as NUCLEI, load_image_and_instances  # noqa: E402
from edgeseg.evaluate import evaluate_panoptic  # noqa: E402
from edgeseg.export import OPSET, default_meta, export_onnx, surgery  # noqa: E402
from edgeseg.export.plugins import plugin_nodes, to_plugins  # noqa: E402
from edgeseg.io import write_text_atomic  # noqa: E402
from edgeseg.models import create  # noqa: E402
from edgeseg.models.checkpoint import load_checkpoint  # noqa: E402
from edgeseg.models.detection.postprocess import panoptic_merge  # noqa: E402
from edgeseg.ops.export import export_flavour  # noqa: E402
from edgeseg.ops.nms import ONNX_TRANSLATIONS  # noqa: E402
from edgeseg.quant import convert_fp16, quantize_int8  # noqa: E402
from edgeseg.runtime import open_session  # noqa: E402
from edgeseg.runtime.prepost import preprocess  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from panoptic_train import RECIPES  # noqa: E402

MODELS = ("lpsnet_resnet18", "panoptic_fpn_resnet18", "lpsnet_resnet50", "deeplabv3plus_internimage_cpu")
FLAVOURS = ("portable", "tensorrt")
VARIANTS = ("torch", "ort_portable", "ort_tensorrt", "ort_portable_fp16", "ort_portable_int8")
LABELS = {"torch": "PyTorch eager", "ort_portable": "ORT portable FP32", "ort_tensorrt": "ORT tensorrt-flavour FP32",
          "ort_portable_fp16": "ORT portable FP16", "ort_portable_int8": "ORT portable INT8"}
MERGE_OF = {"torch": "merge_torch", "ort_portable": "merge_ort_portable", "ort_tensorrt": "merge_ort_tensorrt"}
GOAL_SPEEDUP = 1.3
GOAL_SHARE = 5.0  # % of end-to-end time
CALIBRATION_CROPS = 8
STEPS = {"lpsnet_resnet18": 150, "panoptic_fpn_resnet18": 120}  # panoptic_train.py trains 200


def log(msg: str) -> None:
    print(f"[panoptic_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:240]}"


# --- models ----------------------------------------------------------------------------------------


def trained(name: str, steps: int, work: Path, allow_train: bool) -> Path:
    """The checkpoint of ``name`` trained ``steps`` steps with panoptic_train's recipe (trained here if missing)."""
    from edgeseg.train import train

    path = work / f"{name}_{steps}.pt"
    if not path.is_file():
        if not allow_train:
            raise SystemExit(f"{path} is missing and --no-train was given")
        log(f"{name}: training {steps} steps (panoptic_train recipe)")
        t = time.perf_counter()
        train(replace(RECIPES[name], iterations=steps), path, progress=False, log=lambda m: None)
        log(f"{name}: trained in {time.perf_counter() - t:.0f} s")
    return path


def spread_logits(model, x: torch.Tensor, spread: float = 3.0):
    """Random LPSNet heads give every location about the same class score (all below the candidate threshold):
    rescale the class and border-ness convolutions so their logits on ``x`` have a standard deviation of
    ``spread`` around 0. Then a few hundred locations pass the thresholds and the merge has detections to place."""
    head = model.box_head
    seen: dict[str, list[torch.Tensor]] = {"cls": [], "border": []}
    hooks = [getattr(head, k).register_forward_hook(lambda m, i, o, k=k: seen[k].append(o - m.bias.view(1, -1, 1, 1)))
             for k in seen]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for k, outs in seen.items():
            conv = getattr(head, k)
            std = float(torch.cat([o.flatten() for o in outs]).std())
            conv.weight.mul_(spread / max(std, 1e-12))
            conv.bias.zero_()
    return model


# --- the merge alone --------------------------------------------------------------------------------


class MergeOnly(torch.nn.Module):
    """``panoptic_merge`` with the model's settings, as a module of its four tensor inputs."""

    def __init__(self, rest: tuple, kwargs: dict):
        super().__init__()
        self.rest, self.kwargs = rest, kwargs

    def forward(self, semantic_logits, masks, scores, labels):
        out = panoptic_merge(semantic_logits, masks, scores, labels, *self.rest, **self.kwargs)
        return out["panoptic"], out["segments"]


def merge_inputs(model, x: torch.Tensor) -> tuple[tuple, MergeOnly]:
    """Runs ``model`` on ``x`` once in eager and catches what it hands ``panoptic_merge``."""
    module = sys.modules[type(model).__module__]
    caught: list = []
    original = module.panoptic_merge

    def catching(*args, **kwargs):
        caught.append((args, kwargs))
        return original(*args, **kwargs)

    module.panoptic_merge = catching
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        module.panoptic_merge = original
    args, kwargs = caught[0]
    return tuple(a.clone() for a in args[:4]), MergeOnly(args[4:], kwargs).eval()


def export_merge(merge: MergeOnly, tensors: tuple, flavour: str, path: Path) -> Path:
    if not path.is_file():
        names = ["semantic_logits", "masks", "scores", "labels"]
        with export_flavour(flavour):
            program = torch.onnx.export(merge, tensors, dynamo=True, opset_version=OPSET, input_names=names,
                                        output_names=["panoptic", "segments"], verbose=False,
                                        custom_translation_table=ONNX_TRANSLATIONS)
        proto = surgery.clean(program.model_proto)
        if flavour == "tensorrt":
            proto = to_plugins(proto)
        import onnx

        onnx.save(proto, str(path))
    return path


def raw_ort_session(path: Path):
    """An ONNX Runtime session on a graph without edgeseg metadata (the merge graphs), with the benchmark options."""
    import onnx
    import onnxruntime as ort

    from edgeseg.ops.native import library_path
    from edgeseg.runtime.onnxruntime_backend import session_options

    proto = onnx.load(str(path))
    libs = (str(library_path("libedgeseg_ort.so")),) if plugin_nodes(proto) else ()
    return ort.InferenceSession(proto.SerializeToString(), session_options(None, libs), providers=["CPUExecutionProvider"])


def paste_node_profile(path: Path, batch: np.ndarray, runs: int, work: Path) -> dict:
    """ONNX Runtime's profiler on the tensorrt-flavour graph (the benchmark's session options plus profiling):
    ms per run of its EdgeSegPanopticPaste node (the merge's paste, in the graph) and of the whole run, the
    mean over ``runs`` after one warm-up run. The cross-check of the merge timed alone."""
    import onnxruntime as ort

    from edgeseg.ops.native import library_path
    from edgeseg.runtime.onnxruntime_backend import session_options

    so = session_options(None, (str(library_path("libedgeseg_ort.so")),))
    so.enable_profiling = True
    so.profile_file_prefix = str(work / f"{path.stem}_profile")
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(runs + 1):
        session.run(None, {name: batch})
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    windows = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][1:]
    paste = sum(e["dur"] for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")
                and e.get("args", {}).get("op_name") == "EdgeSegPanopticPaste" and any(a <= e["ts"] <= b for a, b in windows))
    run = sum(b - a for a, b in windows)
    return {"runs": len(windows), "paste_node_ms": paste / 1000 / len(windows), "run_ms": run / 1000 / len(windows),
            "paste_node_share_pct": 100 * paste / run}


# --- one model -------------------------------------------------------------------------------------


def bench_one(name: str, args, work: Path, notes: list[str]) -> dict:
    load_before = loadavg()
    img, _ = load_image_and_instances()
    is_trained = name in RECIPES
    steps = args.steps.get(name)
    if is_trained:
        ckpt = trained(name, steps, work, not args.no_train)
        model, payload = load_checkpoint(ckpt)
        done = payload.get("train_state", {}).get("iteration", 0)
        if done < steps:  # checkpoints are written every epoch: a partial one is not the trained model
            raise RuntimeError(f"{ckpt} holds {done} of {steps} steps (training still running, or stopped)")
        torch_session = open_session(ckpt, "torch")
        meta = torch_session.meta
        tag = f"trained{steps}"
    else:
        torch.manual_seed(0)
        kw = {"thing_classes": list(NUCLEI.thing_classes)} if name.startswith(("lpsnet", "panoptic")) else {}
        model = create(name, num_classes=len(NUCLEI.class_names), in_channels=NUCLEI.in_channels, **kw).eval()
        meta = default_meta(model)
        meta.mean, meta.std = list(NUCLEI.mean), list(NUCLEI.std)
        torch_session = open_session(model, "torch", meta=meta)
        tag = "random"
    batch, _ = preprocess(img[None], meta)  # 1×1×512×512, normalised as the nuclei data set is
    x = torch.from_numpy(batch)
    if not is_trained and name.startswith("lpsnet"):
        spread_logits(model, x)
    panoptic = getattr(model, "task", "semantic") == "panoptic"
    model.eval()

    files: dict[str, Path] = {}
    export_s: dict[str, float] = {}
    for flavour in FLAVOURS:
        path = work / f"{name}_{tag}_{flavour}.onnx"
        if not path.is_file():
            log(f"{name}: exporting the {flavour} flavour")
            t = time.perf_counter()
            try:
                export_onnx(model, path, meta=meta, flavour=flavour, sample=x)
                export_s[flavour] = round(time.perf_counter() - t, 1)
            except Exception as e:  # noqa: BLE001  the report says why, the run goes on
                notes.append(f"{name}: {flavour} export failed ({reason(e)})")
                log(notes[-1])
                continue
        files[f"ort_{flavour}"] = path
    calibration = [preprocess(get_dataset("nuclei", "train").raw(i)[0], meta)[0] for i in range(CALIBRATION_CROPS)]
    if "ort_portable" in files:
        for variant, convert in (("ort_portable_fp16", lambda s, d: convert_fp16(s, d)),
                                 ("ort_portable_int8", lambda s, d: quantize_int8(s, d, calibration))):
            path = work / f"{name}_{tag}_portable_{variant.rsplit('_', 1)[1]}.onnx"
            if not path.is_file():
                log(f"{name}: {variant}")
                try:
                    convert(files["ort_portable"], path)
                except Exception as e:  # noqa: BLE001
                    notes.append(f"{name}: {LABELS[variant]} not made ({reason(e)})")
                    log(notes[-1])
                    continue
            files[variant] = path
    if args.export_only:
        return {}
    sessions = {"torch": torch_session}
    for variant, path in files.items():
        try:
            sessions[variant] = open_session(path)
        except Exception as e:  # noqa: BLE001
            notes.append(f"{name}: {LABELS[variant]} does not load ({reason(e)})")
            log(notes[-1])

    fns = {v: functools.partial(s.run, batch) for v, s in sessions.items()}
    merge_check: dict[str, float] = {}
    detections = None
    if panoptic:
        tensors, merge = merge_inputs(model, x)
        detections = int((tensors[2] > 0).sum())  # filled detection slots handed to the merge
        with torch.inference_mode():
            want = merge(*tensors)
        fns["merge_torch"] = functools.partial(_inference, merge, tensors)
        feed = dict(zip(["semantic_logits", "masks", "scores", "labels"], (t.numpy() for t in tensors)))
        for flavour in FLAVOURS:
            try:
                log(f"{name}: exporting the merge alone ({flavour})")
                s = raw_ort_session(export_merge(merge, tensors, flavour, work / f"{name}_{tag}_merge_{flavour}.onnx"))
                got = s.run(None, feed)
                merge_check[flavour] = float((got[0] == want[0].numpy()).mean())
                fns[f"merge_ort_{flavour}"] = functools.partial(s.run, None, feed)
            except Exception as e:  # noqa: BLE001
                notes.append(f"{name}: the merge alone in the {flavour} flavour not timed ({reason(e)})")
                log(notes[-1])
    log(f"{name}: timing {', '.join(fns)} at 512², {args.warmup} warm-up + {args.repeats} rounds")
    times = time_callables(fns, args.warmup, args.repeats)

    profile = None
    if panoptic and "ort_tensorrt" in files:
        log(f"{name}: ONNX Runtime profile of the tensorrt flavour (1 warm-up + 3 runs)")
        try:
            profile = paste_node_profile(files["ort_tensorrt"], batch, 3, work)
        except Exception as e:  # noqa: BLE001
            notes.append(f"{name}: no ORT profile of the tensorrt flavour ({reason(e)})")
            log(notes[-1])

    # 128² (a held-out crop) and PQ per precision: trained panoptic models only
    pq, times_128 = {}, {}
    if is_trained and panoptic:
        val = get_dataset("nuclei", "val")
        small, _ = preprocess(val.raw(0)[0], meta)
        log(f"{name}: timing at 128², {args.warmup} warm-up + {args.repeats * 2} rounds")
        times_128 = time_callables({v: functools.partial(s.run, small) for v, s in sessions.items()}, args.warmup,
                                   args.repeats * 2)
        for v, s in sessions.items():
            log(f"{name}: PQ of {LABELS[v]}")
            try:
                scores = evaluate_panoptic(s, val, progress=False)
                pq[v] = {**scores["panoptic"].as_dict(), "semantic_miou": scores["semantic"].miou}
            except Exception as e:  # noqa: BLE001
                notes.append(f"{name}: {LABELS[v]} not scored ({reason(e)})")
                log(notes[-1])

    base = np.asarray(times["torch"])
    rows = []
    for v in VARIANTS:
        if v not in times:
            continue
        t = np.asarray(times[v])
        row = {"variant": v, "label": LABELS[v], "median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)),
               "runs": len(t), "times_ms": [round(float(a), 2) for a in t],
               "speedup_vs_torch": float(np.median(base) / np.median(t)),
               "speedup_vs_torch_paired": float(np.median(base / t)),  # the median of per-round ratios
               "model_mb": round(files[v].stat().st_size / 1e6, 2) if v in files else None}
        merge_v = MERGE_OF.get(v)
        if merge_v in times:
            m = np.asarray(times[merge_v])
            row.update(merge_median_ms=float(np.median(m)), merge_p90_ms=float(np.percentile(m, 90)),
                       merge_share_pct=float(100 * np.median(m) / np.median(t)))
        if v in times_128:
            t128 = np.asarray(times_128[v])
            row.update(median_ms_128=float(np.median(t128)), p90_ms_128=float(np.percentile(t128, 90)),
                       speedup_vs_torch_128=float(np.median(times_128["torch"]) / np.median(t128)))
        if v in pq:
            row["pq"] = pq[v]
        rows.append(row)
    return {"model": name, "weights": f"trained {steps} steps on nuclei" if is_trained else "random (seed 0)",
            "task": "panoptic" if panoptic else "semantic", "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
            "detections_to_merge": detections, "merge_agreement_with_eager": merge_check, "export_s": export_s,
            "tensorrt_profile": profile,
            "warmup": args.warmup, "repeats": args.repeats, "command": " ".join(sys.argv), "variants": rows,
            "loadavg_before": load_before, "loadavg_after": loadavg()}


def _inference(merge, tensors):
    with torch.inference_mode():
        return merge(*tensors)


# --- report ------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    m = report["machine"]
    shared = any(float((r[k] or "0").split()[0]) > 2.5 for r in report["models"] for k in ("loadavg_before", "loadavg_after"))
    lines = ["# Panoptic models end to end on the CPU, 1×1×512×512", "",
             (f"Machine: {m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); torch {m['torch']} "
              f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, python {m['python']}, "
              f"OMP_WAIT_POLICY={m['omp_wait_policy']}, ORT session.intra_op.allow_spinning=0. Written by "
              f"`benchmarks/panoptic_bench.py` on {report['date']} ("
              + "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", report["command"]) for r in report["models"]))
              + ")."),
             ("Input: the real 512² nuclei image (1 channel, batch 1; panoptic graphs are exported at batch 1). Latency "
              "per image, median and p90 over round-robin rounds after warm-up, every variant of a model in one process; "
              "speed-up = PyTorch eager median / this median (in brackets: the median of the per-round ratios). "
              "Merge = `panoptic_merge` alone on the tensors the model handed it for this input (eager; in ONNX Runtime "
              "a graph of the merge alone exported in that flavour), timed in the same rounds; share = merge median / "
              "end-to-end median of the same backend. The share is given for the FP32 variants (the merge stays FP32 "
              "in the FP16/INT8 graphs)."), "",
             ("**The machine was shared with other jobs during this run** (1-min load average above 2.5 around "
              if shared else "1/5/15-min load averages (this run's own 2 threads count about 2) around ")
             + "; ".join(f"{r['model']}: {r['loadavg_before']} before, {r['loadavg_after']} after" for r in report["models"])
             + ("): absolute times are inflated and noisy; ratios measured side by side less so." if shared else "."), "",
             "| model | weights | variant | median ms | p90 ms | speed-up vs eager | merge ms | merge share |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report["models"]:
        for v in r["variants"]:
            share = f"{v['merge_median_ms']:.1f} | {v['merge_share_pct']:.1f} %" if "merge_share_pct" in v else "– | –"
            lines.append(f"| {r['model']} | {r['weights']} | {v['label']} | {v['median_ms']:.0f} | {v['p90_ms']:.0f} | "
                         f"{v['speedup_vs_torch']:.2f}× ({v['speedup_vs_torch_paired']:.2f}×) | {share} |")
    profiled = [r for r in report["models"] if r.get("tensorrt_profile")]
    if profiled:
        lines += ["", ("Cross-check inside the graph (ONNX Runtime's profiler on the tensorrt-flavour model, mean of "
                       f"{profiled[0]['tensorrt_profile']['runs']} runs after 1 warm-up): the EdgeSegPanopticPaste node "
                       "alone — the merge's paste, without its argmax, gathers and casts — takes ")
                  + "; ".join(f"{r['model']} {r['tensorrt_profile']['paste_node_ms']:.1f} ms of "
                              f"{r['tensorrt_profile']['run_ms']:.0f} ms ({r['tensorrt_profile']['paste_node_share_pct']:.1f} %)"
                              for r in profiled) + "."]
    scored = [(r, v) for r in report["models"] for v in r["variants"] if "pq" in v]
    if scored:
        lines += ["", "## PQ per precision (nuclei, 7 held-out 128² crops) beside latency", "",
                  "Latency at 128²: the first held-out crop, round-robin as above; at 512²: the table above.", "",
                  "| model | variant | PQ | SQ | RQ | PQ things | PQ stuff | semantic mIoU | median ms 128² | p90 ms 128² | "
                  "speed-up 128² | median ms 512² |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r, v in scored:
            p = v["pq"]
            lat = (f"{v['median_ms_128']:.1f} | {v['p90_ms_128']:.1f} | {v['speedup_vs_torch_128']:.2f}×"
                   if "median_ms_128" in v else "– | – | –")
            lines.append(f"| {r['model']} | {v['label']} | {p['pq']:.3f} | {p['sq']:.3f} | {p['rq']:.3f} | "
                         f"{p['pq_things']:.3f} | {p['pq_stuff']:.3f} | {p['semantic_miou']:.3f} | {lat} | {v['median_ms']:.0f} |")
    lines += ["", "## Goals", "", f"Panoptic merge under {GOAL_SHARE:g} % of end-to-end time:"]
    for r in report["models"]:
        for v in r["variants"]:
            if "merge_share_pct" in v:
                met = "met" if v["merge_share_pct"] < GOAL_SHARE else "NOT met"
                lines.append(f"- {r['model']}, {v['label']}: {v['merge_share_pct']:.2f} % — {met}.")
    lines += ["", f"ONNX Runtime end to end ≥ {GOAL_SPEEDUP}× PyTorch eager (512²):"]
    for r in report["models"]:
        for v in r["variants"]:
            if v["variant"] != "torch":
                met = "met" if v["speedup_vs_torch"] >= GOAL_SPEEDUP else "NOT met"
                lines.append(f"- {r['model']}, {v['label']}: {v['speedup_vs_torch']:.2f}× — {met}.")
    lines += ["", "## Notes", ""]
    for r in report["models"]:
        if r["detections_to_merge"] is not None:
            agree = ", ".join(f"{k} {100 * a:.2f} %" for k, a in r["merge_agreement_with_eager"].items())
            lines.append(f"- {r['model']}: {r['detections_to_merge']} filled detection slots reach the merge on this "
                         f"image; the merge graphs give eager's segment id on {agree or '–'} of the pixels.")
    lines += [f"- {n}." for n in report["notes"]]
    lines += [f"- {n}" for n in report["fixed_notes"]]
    if report.get("not_measured"):
        lines.append(f"- Not measured in this run: {', '.join(report['not_measured'])}.")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    colours = dict(zip(VARIANTS, ["tab:red", "tab:blue", "tab:green", "tab:cyan", "tab:purple"]))
    width = 0.8 / len(VARIANTS)
    for j, v in enumerate(VARIANTS):
        xs, ys, merge = [], [], []
        for i, r in enumerate(models):
            row = next((w for w in r["variants"] if w["variant"] == v), None)
            if row:
                xs.append(i + (j - len(VARIANTS) / 2 + 0.5) * width)
                ys.append(row["median_ms"])
                merge.append(row.get("merge_median_ms", 0.0))
        ax.bar(xs, ys, width, color=colours[v], label=LABELS[v])
        ax.bar(xs, merge, width, color="black")
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles.append(Patch(color="black", label="of which the merge (FP32 variants)"))
    ax.set_xticks(range(len(models)), [r["model"].replace("deeplabv3plus_", "dlv3+_") for r in models], fontsize=8)
    ax.set_ylabel("median ms per 512² image")
    ax.set_title("end-to-end latency at 512² (lower is better)")
    ax.legend(handles=handles, fontsize=7)
    ax = axes[1]
    shown: set[str] = set()
    markers = {"torch": "o", "ort_portable": "s", "ort_tensorrt": "D", "ort_portable_fp16": "v", "ort_portable_int8": "^"}
    for r in models:
        for v in r["variants"]:
            if "pq" in v and "median_ms_128" in v:
                ax.scatter(v["median_ms_128"], v["pq"]["pq"], marker=markers[v["variant"]], color=colours[v["variant"]],
                           edgecolors="black", s=60, label=v["label"] if v["variant"] not in shown else None)
                shown.add(v["variant"])
                if v["variant"] == "torch":  # one label per model (the markers say the variant)
                    ax.annotate(r["model"].replace("_resnet18", "-R18"), (v["median_ms_128"], v["pq"]["pq"]), fontsize=8,
                                xytext=(-10, 8), textcoords="offset points", ha="right")
    if shown:
        ax.legend(fontsize=7, loc="lower right")
        lo, hi = ax.get_ylim()
        mid = (lo + hi) / 2
        ax.set_ylim(min(lo, mid - 0.05), max(hi, mid + 0.05))  # at least ±0.05: PQ differences of 1e-4 are not drawn as gaps
    ax.set_xlabel("median ms per 128² crop")
    ax.set_ylabel("PQ (nuclei, held-out crops)")
    ax.set_title("PQ per precision against latency")
    fig.suptitle("Panoptic models on the CPU (2 cores, shared machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


FIXED_NOTES = [
    ("The R18 models' weights: `benchmarks/panoptic_train.py`'s recipes, trained here for fewer steps than its 200 "
     "(the step count is in the weights column), so their PQ differs from that report's."),
    ("LPSNet-R50 has random weights with its class and border-ness logits spread to a standard deviation of 3 on this "
     "image (random heads score every location alike, under the thresholds): the merge then gets a full or nearly full "
     "detection table, a worst case for it. Its latency does not depend on the weights otherwise."),
    ("The InternImage DeepLab is the `deeplabv3plus_internimage_cpu` configuration, not -T (the -T export takes more than "
     "15 minutes on this machine); random weights, semantic only: no merge, no PQ, latency only."),
    ("Why the merge mostly misses 5 %: it takes D = 100 full-image instance masks (100 × 512² floats, 105 MB, read at least "
     "once), and in eager and the portable graph `panoptic_paste` is its PyTorch form, a loop over the D detections "
     "(unrolled in the graph) with a few full-image operations each; the tensorrt flavour's EdgeSegPanopticPaste does "
     "the loop in one C++ kernel, several times faster than the portable graph (the table), but still reads every mask. Boxes plus "
     "mask-head-sized masks (Mask R-CNN's 28²) pasted inside the merge would cut what it reads by about 300×: not done here."),
    ("The merge is timed as a graph of its own (same flavour, same session options), not inside the model's graph: "
     "ONNX Runtime may schedule the in-graph merge slightly differently."),
    ("LPSNet's own instance masks (its semantic head's pixels inside each box) are counted in the network, not in the "
     "merge: the merge is `panoptic_merge` (semantic argmax, `panoptic_paste`, the segment table)."),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--steps", default=",".join(f"{k}={v}" for k, v in STEPS.items()),
                   help="training steps of the R18 models (panoptic_train recipe), name=steps,...")
    p.add_argument("--no-train", action="store_true", help="refuse to train: the checkpoints must be in --work-dir")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--export-only", action="store_true", help="make the ONNX files in --work-dir and stop")
    p.add_argument("--report-only", action="store_true", help="rewrite the markdown and plot from <out>/panoptic_cpu.json")
    p.add_argument("--work-dir", default="runs/panoptic_bench")
    p.add_argument("--out", default=str(HERE / "results"))
    a = p.parse_args()
    a.steps = {**STEPS, **{k: int(v) for k, v in (kv.split("=") for kv in a.steps.split(",") if kv)}}
    work, out = Path(a.work_dir), Path(a.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    names = [n for n in a.models.split(",") if n]
    report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "machine": machine(),
              "models": [], "notes": [], "fixed_notes": FIXED_NOTES, "not_measured": list(names)}
    earlier = out / "panoptic_cpu.json"
    if a.report_only:  # re-render the markdown and the plot from the JSON, nothing measured
        report = json.loads(earlier.read_text())
        report["fixed_notes"] = FIXED_NOTES
        write_text_atomic(earlier, json.dumps(report, indent=1) + "\n")
        write_text_atomic(out / "panoptic_cpu.md", markdown(report))
        plot(report, out / "panoptic_cpu.png")
        return
    if earlier.is_file() and not a.export_only:  # keep the other models of an earlier invocation (one model a run)
        before = json.loads(earlier.read_text())
        report["models"], report["notes"] = before["models"], before["notes"]  # each replaced once re-measured
    for name in names:
        if a.export_only:
            bench_one(name, a, work, report["notes"])
            continue
        report["notes"] = [n for n in report["notes"] if n.split(":")[0] != name]
        try:
            result = bench_one(name, a, work, report["notes"])
            report["models"] = [r for r in report["models"] if r["model"] != name] + [result]
        except Exception as e:  # noqa: BLE001  one model's failure is reported, the others still run
            report["notes"].append(f"{name}: not measured ({reason(e)})")
            log(report["notes"][-1])
        report["not_measured"].remove(name)
        report["models"].sort(key=lambda r: MODELS.index(r["model"]) if r["model"] in MODELS else len(MODELS))
        write_text_atomic(out / "panoptic_cpu.json", json.dumps(report, indent=1) + "\n")
        write_text_atomic(out / "panoptic_cpu.md", markdown(report))
        if report["models"]:
            plot(report, out / "panoptic_cpu.png")
        log(f"{name}: written to {out}/panoptic_cpu.*")


if __name__ == "__main__":
    main()
