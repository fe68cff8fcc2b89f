"""name -> builder. Builders take ``num_classes``, ``in_channels`` and typed keyword arguments."""
from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from edgeseg.errors import ModelError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULTS: dict[str, dict] = {}


def register(name: str, **defaults):
    """Register ``fn`` under ``name``; ``defaults`` fix arguments that make this name a variant."""

    def wrap(fn: Callable[..., nn.Module]):
        if name in _BUILDERS:
            raise RuntimeError(f"model name registered twice: {name}")
        _BUILDERS[name] = fn
        _DEFAULTS[name] = defaults
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def create(name: str, num_classes: int = 21, in_channels: int = 3, **kwargs) -> nn.Module:
    if name not in _BUILDERS:
        raise ModelError(f"unknown model '{name}'", "run 'edgeseg zoo' to list the models")
    fn = _BUILDERS[name]
    args = {**_DEFAULTS[name], **kwargs}
    accepted = inspect.signature(fn).parameters
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ModelError(f"model '{name}' takes no argument(s) {unknown}",
                         f"its arguments are: {', '.join(p for p in accepted if p not in ('num_classes', 'in_channels'))}")
    model = fn(num_classes=num_classes, in_channels=in_channels, **args)
    # What export and the runtime need to know, kept on the module.
    model.edgeseg_config = {"name": name, "num_classes": num_classes, "in_channels": in_channels, **kwargs}
    model.size_divisor = getattr(model, "size_divisor", 32)
    return model
