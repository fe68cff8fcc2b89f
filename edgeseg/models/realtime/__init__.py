"""Real-time semantic models (a file each): BiSeNetV2, PIDNet-S/M, PP-LiteSeg-T/B on STDC1/2, DDRNet-23-slim,
LR-ASPP on MobileNetV3-Large, EfficientViT-Seg B0. In eval they return ``{"logits"}`` only; in training they add their auxiliary outputs
and name the paper's loss terms in ``model.losses(outputs, target)``. Modules listed in ``model.train_only`` serve
those losses alone: they never run in eval, so they are absent from an exported graph."""
from __future__ import annotations

from torch import nn

from edgeseg.models.realtime import bisenetv2, ddrnet, efficientvit, lraspp, pidnet, ppliteseg  # noqa: F401  (registers the models)

# The papers' own figures: parameters (M) and GMACs (multiply-accumulates, the papers' "GFLOPs") at 1024×2048, where
# the paper gives them; ``source`` names the table. PP-LiteSeg reports neither: its STDC backbones are checked
# against the STDC paper's ImageNet figures instead (tests/test_realtime.py).
PAPER: dict[str, dict] = {
    "bisenetv2": {"params": 3.4, "gmacs": None, "source": "BiSeNetV2 (IJCV 2021) Table 8: 21.15 GFLOPs at 512×1024"},
    "pidnet_s": {"params": 7.6, "gmacs": 47.6, "source": "PIDNet (CVPR 2023) Table 6"},
    "pidnet_m": {"params": 34.4, "gmacs": 197.4, "source": "PIDNet (CVPR 2023) Table 6"},
    "ppliteseg_t": {"params": None, "gmacs": None, "source": "PP-LiteSeg Table 4 gives mIoU and FPS only"},
    "ppliteseg_b": {"params": None, "gmacs": None, "source": "PP-LiteSeg Table 4 gives mIoU and FPS only"},
    "ddrnet23_slim": {"params": 5.7, "gmacs": 36.3, "source": "DDRNet (T-ITS 2022) Table 4"},
    "lraspp_mobilenetv3": {"params": 1.51, "gmacs": 9.74, "source": "MobileNetV3 (ICCV 2019) Table 7"},
    "efficientvit_seg_b0": {"params": 0.7, "gmacs": 4.4, "source": "mit-han-lab/efficientvit README, EfficientViT-Seg"},
}


def inference_parameters(model: nn.Module) -> int:
    """Parameters of what runs in eval (and is exported): all but the modules named in ``model.train_only``."""
    skip = {id(p) for name in getattr(model, "train_only", ()) for p in getattr(model, name).parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
