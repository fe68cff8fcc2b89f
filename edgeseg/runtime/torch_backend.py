"""PyTorch backend: eager FP32 on the CPU is the reference every other backend is held against; on a CUDA
device it also runs FP16 and torch.compile, so a GPU gets accuracy-vs-speed rows without TensorRT.

FP16 is autocast (``torch.autocast("cuda", torch.float16)``), not ``model.half()``: convolutions and matrix
products run in FP16 while autocast keeps softmax, norms, reductions and the ops registered FP32-only
(torchvision's RoIAlign and deformable convolution among them) in FP32, the way TensorRT mixes precisions, so
every zoo model (detectors included) runs without overflow or a half kernel it lacks. The price: weights are
cast on each call, which a ``.half()`` model would not pay."""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
from torch import nn

from edgeseg.errors import BackendError
from edgeseg.export.metadata import ModelMeta
from edgeseg.runtime.base import check_batch


def cuda_missing() -> str | None:
    """Why the CUDA PyTorch variants cannot run here (one line), or None when a CUDA device is visible."""
    if not torch.backends.cuda.is_built():
        return f"this PyTorch ({torch.__version__}) is built without CUDA"
    if not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


class TorchSession:
    """``device`` "cpu" or "cuda[:n]"; ``precision`` "fp32" or "fp16" (autocast, CUDA only); ``compile``: run the
    model through ``torch.compile`` (compiled on the first run of each input shape). ``backend`` names the
    combination: torch, torch-compile, torch-cuda, torch-cuda-compile."""

    def __init__(self, model: nn.Module, meta: ModelMeta, device: str = "cpu", precision: str = "fp32",
                 compile: bool = False):
        cuda = str(device).startswith("cuda")
        if precision not in ("fp32", "fp16"):
            raise BackendError(f"PyTorch runs fp32 or fp16, not '{precision}'", "use fp32 (or fp16 on a CUDA device)")
        if precision == "fp16" and not cuda:
            raise BackendError("PyTorch FP16 runs on a CUDA device only", "use fp32 on the CPU, or device='cuda'")
        if cuda and cuda_missing():
            raise BackendError(f"cannot run PyTorch on {device}: {cuda_missing()}", "use device='cpu'")
        first = next(model.parameters(), None)
        if first is not None and first.device != torch.device(device):
            # Module.to moves in place: a session on another device must not move its caller's model (bench's
            # torch:fp32 and torch-cuda rows share one; the CPU row then failed on CUDA weights).
            model = copy.deepcopy(model)
        self.model = model.eval().to(device)
        self.meta = meta
        self.device = str(device)
        self.precision = precision
        self.backend = "torch" + ("-cuda" if cuda else "") + ("-compile" if compile else "")
        self.forward = torch.compile(self.model) if compile else self.model

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(check_batch(batch, self.meta)).to(self.device)
        fp16 = self.precision == "fp16"
        with torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext():
            out = self.forward(x)
        if isinstance(out, torch.Tensor):
            out = {"logits": out}
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)  # the queued kernels are part of the call (and of its timing)
        return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in out.items()}  # ints stay ints
