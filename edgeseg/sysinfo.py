"""The machine and library versions recorded with every benchmark result."""
from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info() -> dict:
    import numpy
    import onnx
    import onnxruntime
    import torch

    import edgeseg

    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "edgeseg": edgeseg.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    try:
        import tensorrt  # noqa: F401

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info
