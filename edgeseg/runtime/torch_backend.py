"""PyTorch eager backend: the reference every other backend is held against."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeseg.export.metadata import ModelMeta
from edgeseg.runtime.base import check_batch


class TorchSession:
    backend = "torch"
    precision = "fp32"

    def __init__(self, model: nn.Module, meta: ModelMeta, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.meta = meta
        self.device = device

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        x = torch.from_numpy(check_batch(batch, self.meta)).to(self.device)
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            out = {"logits": out}
        return {k: (v.float() if v.is_floating_point() else v).cpu().numpy() for k, v in out.items()}  # ints stay ints
