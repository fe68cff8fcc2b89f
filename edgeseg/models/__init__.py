"""The zoo: ``list_models()`` names every model, ``create(name, num_classes=..., **kw)`` builds one.

Every model takes a normalised N×C×H×W float tensor and returns ``{"logits": N×K×H×W}`` at input
resolution; ``model.size_divisor`` is the multiple that H and W must be.
"""
from __future__ import annotations

from edgeseg.models import deeplab, fcdensenet, fcn, hrnet, segnet, unet  # noqa: F401  (registers the models)
from edgeseg.models.common import count_parameters, gflops
from edgeseg.models.registry import create, list_models

__all__ = ["count_parameters", "create", "gflops", "list_models"]
