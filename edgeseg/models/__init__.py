"""The zoo: ``list_models()`` names every model, ``create(name, num_classes=..., **kw)`` builds one.

Every model takes a normalised N×C×H×W float tensor; semantic models return ``{"logits": N×K×H×W}`` at
input resolution, instance models the fixed-size detections of ``edgeseg.models.detection``
(``list_models(task)`` names each task's models); ``model.size_divisor`` is the multiple that H and W must be.
"""
from __future__ import annotations

from edgeseg.models import deeplab, detection, fcdensenet, fcn, hrnet, realtime, segnet, unet  # noqa: F401  (registers the models)
from edgeseg.models.common import TorchvisionSegmentation, count_parameters, gflops
from edgeseg.models.registry import create, list_models, model_task

__all__ = ["TorchvisionSegmentation", "count_parameters", "create", "gflops", "list_models", "model_task"]
