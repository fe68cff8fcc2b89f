"""Custom ops side by side at typical Mask R-CNN / DCN / InternImage / panoptic shapes.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/ops_bench.py                  # CPU: native launcher vs torchvision CPU
    python benchmarks/ops_bench.py --device cuda --cuda-lib build/plugins/libedgeseg_cuda.so   # via scripts/gpu_check.sh

CPU: the CPU launcher (``impl="native"``, the math core) against torchvision's CPU op where there is one,
else the PyTorch reference. CUDA: the plugins' CUDA launchers against torchvision's CUDA ops and the
PyTorch references on the GPU, FP32 and FP16, with the errors against the FP32 reference and, for DCNv2
and RoIAlign, the roofline arithmetic (bytes and FLOPs over measured copy bandwidth and FP32 GEMM rate).
Writes benchmarks/results/ops_<device>[_<gpu>].{json,md}.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import statistics

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torchvision  # noqa: E402
from torchvision.models.detection.roi_heads import paste_masks_in_image  # noqa: E402

from edgeseg import ops  # noqa: E402
from edgeseg.bench import time_callables  # noqa: E402
from edgeseg.io import write_text_atomic  # noqa: E402
from edgeseg.sysinfo import machine_info  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def workloads(device: str, dtype=torch.float32, seed: int = 0) -> dict:
    """Inputs for each op at a typical deployment shape."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(device=device, dtype=dtype)

    image = (800, 1088)
    xy = torch.rand(512, 2, generator=g) * torch.tensor([1000.0, 700.0])
    wh = torch.rand(512, 2, generator=g) * 300 + 8
    boxes = torch.cat([torch.zeros(512, 1), xy, xy + wh], 1).to(device=device, dtype=dtype)
    levels = [rand(1, 256, image[0] // s, image[1] // s) for s in (4, 8, 16, 32)]
    dcn_x = rand(1, 256, 64, 64)  # ResNet-50 stage 3 at a 1024-pixel input
    ho = wo = 64
    panoptic_h, panoptic_w = 400, 544
    semantic = torch.randint(0, 53, (panoptic_h, panoptic_w), generator=g).to(device)
    return {
        "roi_align": dict(x=levels[0], rois=boxes, out=7, scale=0.25),
        "multilevel_roi_align": dict(feats=levels, rois=boxes, out=7),
        "deform_conv2d": dict(x=dcn_x, w=rand(256, 256, 3, 3, scale=0.02), offset=rand(1, 18, ho, wo, scale=2.0),
                              mask=torch.rand(1, 9, ho, wo, generator=g).to(device=device, dtype=dtype), b=rand(256)),
        "dcnv3": dict(x=rand(1, 56, 56, 128), offset=rand(1, 56, 56, 8 * 9 * 2, scale=2.0),
                      mask=torch.softmax(torch.randn(1, 56, 56, 8, 9, generator=g), -1).reshape(1, 56, 56, 72).to(device=device, dtype=dtype)),
        "paste_masks": dict(masks=torch.rand(100, 28, 28, generator=g).to(device=device, dtype=dtype), boxes=boxes[:100, 1:], image=image),
        "panoptic_paste": dict(semantic=semantic, masks=(torch.rand(50, panoptic_h, panoptic_w, generator=g) > 0.97).float().to(device),
                               scores=torch.rand(50, generator=g).to(device), classes=torch.randint(0, 80, (50,), generator=g).to(device)),
    }


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
        lines += [f"## {op}", "", entry["shape"], "", "| variant | median ms | p90 ms | speed-up |", "|---|---:|---:|---:|"]
        lines += [f"| {r['variant']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | {r['speedup_vs_baseline']:.2f}× |" for r in entry["rows"]]
        for note in entry.get("notes", []):
            lines += ["", note]
        lines.append("")
    return "\n".join(lines)


SHAPES = {
    "roi_align": "P2 1×256×200×272 (800×1088 image), 512 boxes, 7×7, sampling 2, aligned.",
    "multilevel_roi_align": "P2–P5 of an 800×1088 image, 256 channels, 512 boxes, 7×7, sampling 2 (FPN level by box size).",
    "deform_conv2d": "ResNet-50 stage 3: 1×256×64×64 → 256, 3×3, pad 1, one offset group, modulated (DCNv2).",
    "dcnv3": "InternImage-T stage 2: 1×56×56×128 channels-last, 8 groups, 3×3 (the core; projections are plain linears).",
    "paste_masks": "100 RoI masks 28×28 into 800×1088 (the same arithmetic as torchvision's paste_masks_in_image, matched within 1e-6).",
    "panoptic_paste": "50 instances over 400×544, 133 classes of which 80 things.",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--cuda-lib", help="libedgeseg_cuda.so (built by scripts/gpu_check.sh)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ops", default="all")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
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
