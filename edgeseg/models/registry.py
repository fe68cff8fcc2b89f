"""name -> builder. Builders take ``num_classes``, ``in_channels`` and typed keyword arguments."""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from edgeseg.errors import ModelError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULTS: dict[str, dict] = {}
_TASKS: dict[str, str] = {}
TASKS = ("semantic", "instance", "panoptic")

# What a builder argument may be: (type, low, high) for numbers, (str, choices) for names. These are the
# arguments that size a model; a checkpoint's config is checked against them before anything is built.
# Arguments that name a variant (backbone, config, stride, output_stride) are fixed by the registered
# name and cannot be overridden.
ARG_RANGES: dict[str, tuple] = {
    "num_classes": (int, 1, 1024),
    "in_channels": (int, 1, 64),
    "base_width": (int, 1, 128),
    "depth": (int, 1, 6),
    "fc_channels": (int, 1, 4096),
    "width_mult": (float, 0.0625, 2.0),
    "dropout": (float, 0.0, 1.0),
    "drop_path": (float, 0.0, 1.0),    # stochastic depth rate of a backbone's last block (InternImage)
    "batch_norm": (bool,),
    "head": (str, ("v1", "v2", "v2p")),
    "max_detections": (int, 1, 1000),  # instance models: D, the fixed number of detection slots
    "proposals": (int, 1, 6000),       # instance models: RPN top-n before and after NMS
    # instance models' training cost and object size (build_maskrcnn)
    "anchor_size": (int, 2, 512),
    "train_proposals": (int, 1, 6000),
    "rpn_batch_size_per_image": (int, 1, 4096),
    "box_batch_size_per_image": (int, 1, 4096),
    "mask_channels": (int, 1, 1024),
    "representation_size": (int, 1, 4096),
    # panoptic models' semantic branch and merge (panoptic_fpn.py)
    "semantic_channels": (int, 1, 1024),
    "min_stuff_area": (int, 0, 1 << 24),
    # LPSNet (detection/lpsnet.py)
    "thing_classes": (list, int, 0, 1023),   # panoptic models: the data set's thing class indices
    "fpn_channels": (int, 1, 1024),
    "head_convs": (int, 0, 8),
    "object_size": (int, 1, 4096),           # FCOS's first level range: max(l, t, r, b) <= object_size on P3
    "candidates_per_level": (int, 1, 6000),
    "score_threshold": (float, 0.0, 1.0),
    "nms_threshold": (float, 0.0, 1.0),
    "paste_score_threshold": (float, 0.0, 1.0),
    "overlap_threshold": (float, 0.0, 1.0),
    "semantic_loss_weight": (float, 0.0, 100.0),
}


def check_arg(model: str, key: str, value, spec: tuple | None = None) -> None:
    """Refuse a builder argument of the wrong type or out of its range, naming it and the range
    (``spec``: the range to check instead of ``ARG_RANGES[key]``; a list's items are checked so)."""
    spec = spec or ARG_RANGES.get(key)
    if spec is None:
        raise ModelError(f"model '{model}': argument '{key}' has no declared range", "report this as an edgeseg bug")
    kind = spec[0]
    if kind is list:  # (list, item type, low, high): a non-empty list of at most 1024 items, each checked
        if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= 1024:
            raise ModelError(f"model '{model}': argument {key}={value!r:.40} is not a list of 1..1024 items",
                             f"give {key} as a list of {spec[1].__name__}")
        for item in value:
            check_arg(model, key, item, spec[1:])
        return
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ModelError(f"model '{model}': argument {key}={value!r:.40} is not of type {kind.__name__}",
                         f"give {key} as {kind.__name__}")
    if kind in (int, float) and not spec[1] <= value <= spec[2]:
        raise ModelError(f"model '{model}': argument {key}={value} is outside {spec[1]}..{spec[2]}",
                         f"choose {key} in {spec[1]}..{spec[2]}")
    if kind is str and value not in spec[1]:
        raise ModelError(f"model '{model}': argument {key}={value!r:.40} is not one of {', '.join(spec[1])}",
                         f"choose {key} from {', '.join(spec[1])}")


def register(name: str, task: str = "semantic", **defaults):
    """Register ``fn`` under ``name`` for ``task``; ``defaults`` fix arguments that make this name a variant."""

    def wrap(fn: Callable[..., nn.Module]):
        if name in _BUILDERS:
            raise RuntimeError(f"model name registered twice: {name}")
        _BUILDERS[name] = fn
        _DEFAULTS[name] = defaults
        _TASKS[name] = task
        return fn

    return wrap


def list_models(task: str | None = "semantic") -> list[str]:
    """The zoo's names for ``task`` (semantic by default: the models whose output is ``logits``); None: all."""
    return sorted(n for n in _BUILDERS if task is None or _TASKS[n] == task)


def model_task(name: str) -> str:
    return _TASKS[name]


def check_args(name, num_classes=21, in_channels=3, **kwargs) -> None:
    """Everything ``create`` refuses, without building anything: the name, unknown arguments, types, ranges."""
    if not isinstance(name, str) or name not in _BUILDERS:
        raise ModelError(f"unknown model '{name!s:.80}'", "run 'edgeseg zoo' to list the models")
    accepted = inspect.signature(_BUILDERS[name]).parameters
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ModelError(f"model '{name}' takes no argument(s) {unknown}"[:300],
                         f"its arguments are: {', '.join(p for p in accepted if p not in ('num_classes', 'in_channels'))}")
    for key, value in {"num_classes": num_classes, "in_channels": in_channels, **kwargs}.items():
        fixed = _DEFAULTS[name]
        if key in fixed:
            if value != fixed[key]:
                raise ModelError(f"model '{name}' fixes {key}={fixed[key]!r}, got {value!r:.40}",
                                 f"drop {key}, or pick the zoo name with the {key} you want")
            continue
        check_arg(name, key, value)


def create(name: str, num_classes: int = 21, in_channels: int = 3, **kwargs) -> nn.Module:
    check_args(name, num_classes, in_channels, **kwargs)
    fn = _BUILDERS[name]
    args = {**_DEFAULTS[name], **kwargs}
    model = fn(num_classes=num_classes, in_channels=in_channels, **args)
    # What export and the runtime need to know, kept on the module.
    model.edgeseg_config = {"name": name, "num_classes": num_classes, "in_channels": in_channels, **kwargs}
    model.size_divisor = getattr(model, "size_divisor", 32)
    return model
