"""Backbones that several heads share: each returns multi-scale NCHW features and names their
``out_channels`` and ``strides``."""
from __future__ import annotations

from edgeseg.models.backbones.internimage import CONFIGS as INTERNIMAGE_CONFIGS
from edgeseg.models.backbones.internimage import InternImage, internimage, internimage_cpu, internimage_t

__all__ = ["INTERNIMAGE_CONFIGS", "InternImage", "internimage", "internimage_cpu", "internimage_t"]
