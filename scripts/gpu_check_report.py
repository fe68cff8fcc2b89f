"""gpu_check.sh's evidence: WORK (steps.tsv: name, status, seconds; NAME.log per step; kernels.json from
edgeseg/ops/cuda_check.py) + the machine -> exactly OUT/gpu_check.json and OUT/gpu_check.md.

    python scripts/gpu_check_report.py WORK OUT      (one folder: WORK = OUT)

Plain Python (no torch needed), so it still reports when the device's Python stack is what failed, and the CPU
tests run it on records the CPU launcher produced."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgeseg.io import write_text_atomic  # noqa: E402 (edgeseg.io imports no torch)

CHECK_SECTIONS = ("hostile", "references", "panoptic_vs_cpu", "dcnv2_grid")


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        info["gpu"] = gpu or "none"
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = "none (no nvidia-smi)"
    return info


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def read_steps(work: Path) -> list[dict]:
    steps = []
    tsv = work / "steps.tsv"
    for line in tsv.read_text().splitlines() if tsv.is_file() else []:
        name, status, seconds = (line.split("\t") + ["", "", "0"])[:3]
        step = {"step": name, "status": status, "seconds": int(seconds or 0)}
        if status != "ok" and not status.startswith("skipped"):
            step["log_tail"] = _tail(work / f"{name}.log")
        steps.append(step)
    return steps


def report(work: Path, out: Path, machine_info: dict | None = None) -> dict:
    """Collects what the run left in ``work`` and writes OUT/gpu_check.{json,md}; returns the JSON's dict.
    ``passed``: every step ran ok (or was skipped as not applicable here: "skipped ..."; a step the budget left
    out is a failure), and every check and every timed kernel said ok."""
    work, out = Path(work), Path(out)
    kernels_file = work / "kernels.json"
    kernels = json.loads(kernels_file.read_text()) if kernels_file.is_file() else {}
    checks = [{"section": s, **rec} for s in CHECK_SECTIONS for rec in kernels.get(s, [])]
    timing = kernels.get("timing", {})
    if isinstance(timing, list):  # the section itself failed: its one record
        checks += [{"section": "timing", **rec} for rec in timing]
        timing = {}
    steps = read_steps(work)
    timed = timing.get("kernels", [])
    failures = ([s["step"] for s in steps if s["status"] != "ok" and not s["status"].startswith("skipped")] + [f"{c['kernel']}: {c['case']}" for c in checks if c["status"] != "ok"]
                + [f"timing {t['kernel']}" for t in timed if t["status"] != "ok"])
    result = {"passed": bool(steps) and not failures, "failures": failures, "machine": machine_info or machine(),
              "device": {k: kernels[k] for k in ("device", "capability", "torch", "torchvision", "cuda") if k in kernels},
              "arch": (work / "arch").read_text().strip() if (work / "arch").is_file() else None,
              "steps": steps, "checks": checks, "timing": timing}
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "gpu_check.json", json.dumps(result, indent=1) + "\n")
    write_text_atomic(out / "gpu_check.md", markdown(result))
    return result


def markdown(r: dict) -> str:
    gpu = r["device"].get("device") or r["machine"].get("gpu", "?")
    lines = [f"# gpu_check on {gpu}", "",
             f"**{'passed' if r['passed'] else 'FAILED'}** — {len(r['checks'])} checks, {len(r['failures'])} failures; "
             f"launchers built for sm_{r['arch']}. Machine: `{json.dumps(r['machine'])}`; "
             f"`{json.dumps(r['device'])}`.", "", "## Steps", "", "| step | status | s |", "|---|---|---:|"]
    lines += [f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in r["steps"]]
    for s in r["steps"]:
        if s.get("log_tail"):
            lines += ["", f"`{s['step']}` log tail:", "", "```", s["log_tail"], "```"]
    lines += ["", "## Checks (CUDA launcher against the CPU launcher, torchvision and the PyTorch references)", "",
              "| section | kernel | case | status | detail |", "|---|---|---|---|---|"]
    cell = lambda t: str(t).replace("|", "\\|").replace("\n", " ")[:200]  # noqa: E731
    lines += [f"| {c['section']} | {c['kernel']} | {cell(c['case'])} | {c['status']} | {cell(c.get('detail', ''))} |"
              for c in r["checks"]]
    bw = r["timing"].get("bandwidth")
    if bw:
        peak = f"{bw['peak_bytes_per_s'] / 1e9:.0f} GB/s peak ({bw['memory_clock_khz']} kHz × {bw['bus_width_bits']} bit × 2)" \
            if bw.get("peak_bytes_per_s") else "no peak in the device properties"
        lines += ["", "## Timing (FP32, median of side-by-side runs)", "",
                  f"Memory-bound estimate = bytes read + written once / bandwidth: {peak}; measured copy "
                  f"{bw['copy_bytes_per_s'] / 1e9:.0f} GB/s; used: {bw['used']}.", "",
                  "| kernel | baseline | baseline ms | edgeseg ms | speed-up | MB moved | memory-bound ms | edgeseg at % of memory-bound |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for t in r["timing"].get("kernels", []):
            if t["status"] == "ok":
                lines.append(f"| {t['kernel']} | {t['baseline']} | {t['baseline_ms']:.3f} | {t['edgeseg_ms']:.3f} | "
                             f"{t['speedup']:.2f}× | {t['bytes'] / 1e6:.1f} | {t['memory_bound_ms']:.4f} | "
                             f"{100 * t['of_memory_bound']:.1f} % |")
            else:
                lines.append(f"| {t['kernel']} | {t['baseline']} | failed: {cell(t.get('detail', ''))} | | | | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python scripts/gpu_check_report.py WORK [OUT]")
    res = report(Path(sys.argv[1]), Path(sys.argv[-1]))
    print(f"gpu_check: {'passed' if res['passed'] else 'FAILED: ' + '; '.join(res['failures'])[:400]} "
          f"-> {sys.argv[-1]}/gpu_check.json, gpu_check.md")
