"""Custom ops side by side at typical Mask R-CNN / DCN / InternImage / panoptic shapes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/ops_bench.py                  # CPU: native launcher vs torchvision CPU
    python benchmarks/ops_bench.py --device cuda --cuda-lib build/plugins/libedgeseg_cuda.so   # on a GPU machine
    .venv/bin/python benchmarks/ops_bench.py --report-only [--device cuda]     # the markdown again from the JSON

CPU: the CPU launcher (``impl="native"``, the math core) against torchvision's CPU op where there is one,
else the PyTorch reference. CUDA: the plugins' CUDA launchers against torchvision's CUDA ops and the
PyTorch references on the GPU, FP32 and FP16, with the errors against the FP32 reference and, for DCNv2
and RoIAlign, the roofline arithmetic (bytes and FLOPs over measured copy bandwidth and FP32 GEMM rate).
Writes benchmarks/results/ops_<device>[_<gpu>].{json,md}. The inputs are ``edgeseg.ops.workloads``'s.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import statistics
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.detection.roi_heads import paste_masks_in_image  # noqa: E402

from edgeseg import ops  # noqa: E402
from edgeseg.bench import table, time_callables  # noqa: E402
from edgeseg.io import write_text_atomic  # noqa: E402
from edgeseg.ops.workloads import SHAPES, workloads  # noqa: E402
from edgeseg.sysinfo import machine_info  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_variants(w: dict) -> dict[str, dict]:
    """op -> {variant: callable}; the first variant is the baseline."""
    r, m, d, v, p, q = (w[k] for k in ("roi_align", "multilevel_roi_align", "deform_conv2d", "dcnv3", "paste_masks", "panoptic_paste"))
    pooler = torchvision.ops.MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], m["out"], sampling_ratio=2)
    feats = dict(zip(["p2", "p3", "p4", "p5"], m["feats"]))
    boxes_list = [m["rois"][:, 1:]]
    shapes = [(800, 1088)]
    return {
        "roi_align": {
            "torchvision": lambda: torchvision.ops.roi_align(r["x"], r["rois"], r["out"], r["scale"], 2, True),
            "edgeseg native": lambda: ops.roi_align(r["x"], r["rois"], r["out"], r["scale"], 2, True, impl="native")},
        "multilevel_roi_align": {
            "torchvision MultiScaleRoIAlign": lambda: pooler(feats, boxes_list, shapes),
            "edgeseg native": lambda: ops.multilevel_roi_align(m["feats"], m["rois"], m["out"], [1 / 4, 1 / 8, 1 / 16, 1 / 32], 2, impl="native")},
        "deform_conv2d": {
            "torchvision": lambda: torchvision.ops.deform_conv2d(d["x"], d["offset"], d["w"], d["b"], 1, 1, 1, d["mask"]),
            "edgeseg native": lambda: ops.deform_conv2d(d["x"], d["offset"], d["w"], d["b"], 1, 1, 1, d["mask"], impl="native")},
        "dcnv3": {
            "edgeseg torch reference": lambda: ops.dcnv3(v["x"], v["offset"], v["mask"], 3, 1, 1, 1, 8),
            "edgeseg native": lambda: ops.dcnv3(v["x"], v["offset"], v["mask"], 3, 1, 1, 1, 8, impl="native")},
        "paste_masks": {
            "torchvision paste_masks_in_image": lambda: paste_masks_in_image(p["masks"][:, None], p["boxes"], p["image"]),
            "edgeseg torch reference": lambda: ops.paste_masks(p["masks"], p["boxes"], p["image"]),
            "edgeseg native": lambda: ops.paste_masks(p["masks"], p["boxes"], p["image"], impl="native")},
        "panoptic_paste": {
            "edgeseg torch reference": lambda: ops.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, min_stuff_area=64),
            "edgeseg native": lambda: ops.panoptic_paste(q["semantic"], q["masks"], q["scores"], q["classes"], 133, 80, min_stuff_area=64, impl="native")},
    }


def summarise(times: dict[str, list[float]]) -> list[dict]:
    """One row per variant; speed-up over the first. Not ``edgeseg.bench.summarize``: its p90 interpolates between
    runs, this one is the run below (numpy's method="lower"), as the committed tables were made."""
    base = statistics.median(next(iter(times.values())))
    rows = []
    for name, t in times.items():
        med = statistics.median(t)
        rows.append({"variant": name, "median_ms": med, "p90_ms": sorted(t)[int(0.9 * (len(t) - 1))],
                     "speedup_vs_baseline": base / med, "runs": len(t)})
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# edgeseg custom ops on {report['device']}", "",
             f"Machine: {m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); torch {m['torch']} "
             f"({m['torch_threads']} threads), torchvision {report['torchvision']}, python {m['python']}, "
             f"OMP_WAIT_POLICY={m['omp_wait_policy']}. Median and p90 over round-robin runs after warm-up; "
             "speed-up against the first variant of each op, measured side by side.", ""]
    for op, entry in report["ops"].items():
        lines += [f"## {op}", "", entry["shape"], ""]
        lines += table(["variant", "median ms", "p90 ms", "speed-up"],
                       [[r["variant"], f"{r['median_ms']:.3f}", f"{r['p90_ms']:.3f}", f"{r['speedup_vs_baseline']:.2f}×"]
                        for r in entry["rows"]])
        for note in entry.get("notes", []):
            lines += ["", note]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--cuda-lib", help="libedgeseg_cuda.so (built by scripts/gpu_check.sh)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ops", default="all")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown from the JSON in --out (cuda: every GPU's ops_cuda_*.json there)")
    a = ap.parse_args()
    if a.report_only:  # a GPU's report is named after it, and this machine may have none: take the files there
        paths = sorted(Path(a.out).glob("ops_cpu.json" if a.device == "cpu" else "ops_cuda_*.json"))
        if not paths:
            raise SystemExit(f"no ops_{a.device} report in {a.out}: nothing to rewrite")
        for path in paths:
            write_text_atomic(path.with_suffix(".md"), markdown(json.loads(path.read_text())))
        return
    report = {"device": a.device, "machine": machine_info(), "torchvision": torchvision.__version__, "ops": {}}
    if a.device == "cpu":
        variants = cpu_variants(workloads("cpu"))
        sync = lambda: None  # noqa: E731
        name = "ops_cpu"
    else:
        from edgeseg.ops.cuda_check import cuda_variants  # the ctypes bindings of libedgeseg_cuda

        variants, notes = cuda_variants(ctypes.CDLL(a.cuda_lib), workloads)
        sync = torch.cuda.synchronize
        gpu = re.sub(r"[^a-z0-9]+", "_", torch.cuda.get_device_name().lower()).strip("_")
        name = f"ops_cuda_{gpu}"
    for op, fns in variants.items():
        if a.ops != "all" and op not in a.ops.split(","):
            continue
        with torch.no_grad():
            times = time_callables(fns, a.warmup, a.repeats, sync=sync)
        report["ops"][op] = {"shape": SHAPES[op], "rows": summarise(times)}
        if a.device == "cuda":
            report["ops"][op]["notes"] = notes.get(op, [])
        print(op, {r["variant"]: round(r["median_ms"], 3) for r in report["ops"][op]["rows"]}, flush=True)
    os.makedirs(a.out, exist_ok=True)
    write_text_atomic(os.path.join(a.out, f"{name}.json"), json.dumps(report, indent=2) + "\n")
    write_text_atomic(os.path.join(a.out, f"{name}.md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
