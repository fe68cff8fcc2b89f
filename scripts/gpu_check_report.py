"""gpu_check.sh's summary: OUT/steps.tsv (name, status, seconds) + the machine -> OUT/gpu_check.{json,md}.
Plain Python (no torch needed to import), so the CPU tests can run it on a made-up steps file."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path


def machine() -> dict:
    info = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()}
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        info["gpu"] = gpu or "none"
    except (OSError, subprocess.TimeoutExpired):
        info["gpu"] = "none (no nvidia-smi)"
    try:
        import torch  # noqa: PLC0415 (optional: the report works without it)
        info["torch"], info["cuda"] = torch.__version__, torch.version.cuda
    except ImportError:
        pass
    return info


def report(out: Path) -> dict:
    steps = []
    for line in (out / "steps.tsv").read_text().splitlines():
        name, status, seconds = line.split("\t")
        steps.append({"step": name, "status": status, "seconds": int(seconds)})
    result = {"machine": machine(), "steps": steps, "passed": all(s["status"] == "ok" for s in steps),
              "results": sorted(p.name for p in out.glob("ops_cuda_*.json"))}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    rows = "\n".join(f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps)
    (out / "gpu_check.md").write_text(f"# gpu_check on {result['machine']['gpu']}\n\n| step | status | s |\n|---|---|---|\n{rows}\n\n"
                                      f"Machine: `{json.dumps(result['machine'])}`. Kernel timings: {', '.join(result['results']) or 'none'}.\n")
    return result


if __name__ == "__main__":
    print(json.dumps(report(Path(sys.argv[1]))["steps"]))
