"""Making one step of an eager model measurable: random weights that give the steps after a head real work
(``spread_outputs``), and one step of a pipeline timed alone on the inputs it really gets (``catch_call``)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch


def spread_outputs(modules: Sequence[torch.nn.Module], run: Callable[[], object], spread: float = 3.0) -> None:
    """Rescale each module's weight (its bias set to zero) so that its outputs over ``run()`` have the standard
    deviation ``spread``. Random heads score every location alike, all under the candidate thresholds; spread, they
    pass candidates, and what follows them (NMS, the panoptic merge) runs at the size a trained model gives it."""
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(modules))}
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: seen[i].append(out - mod.bias.view(1, -1, 1, 1)))
             for i, m in enumerate(modules)]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for i, m in enumerate(modules):
            if not seen[i]:
                raise RuntimeError(f"{type(m).__name__} #{i} did not run: nothing to spread")
            m.weight.mul_(spread / max(float(torch.cat([o.flatten() for o in seen[i]]).std()), 1e-12))
            m.bias.zero_()


def catch_call(owner, name: str, run: Callable[[], object]) -> tuple[Callable[[], object], tuple, dict]:
    """The first call that ``run()`` makes to ``owner.<name>`` (a module's function, looked up when called): a
    function that makes that call again, alone and in inference mode, and the call's arguments."""
    original, caught = getattr(owner, name), []
    setattr(owner, name, lambda *args, **kw: caught.append((args, kw)) or original(*args, **kw))
    try:
        with torch.inference_mode():
            run()
    finally:
        setattr(owner, name, original)
    if not caught:
        raise RuntimeError(f"{getattr(owner, '__name__', owner)}.{name} was not called")
    args, kw = caught[0]

    def again():
        with torch.inference_mode():
            return original(*args, **kw)

    return again, args, kw
