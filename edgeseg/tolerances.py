"""The one tolerance table: per precision and output kind, used by parity tests, ``edgeseg parity``
and the benchmarks alike.

``atol + rtol * max|reference|`` bounds the max abs error (scaled by the reference's range, since
random-init and trained nets have logits of very different size). The metric that matters is held
too: argmax agreement and the mIoU drop against the reference (in mIoU points: 0.01 = 1 point).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    atol: float | None  # None: the error is reported but not bounded (INT8 logits shift by design)
    rtol: float
    min_argmax_agreement: float
    max_miou_drop: float


TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("fp32", "logits"): Tolerance(atol=1e-4, rtol=1e-4, min_argmax_agreement=0.999, max_miou_drop=0.001),
    ("fp16", "logits"): Tolerance(atol=1e-2, rtol=1e-2, min_argmax_agreement=0.99, max_miou_drop=0.005),
    ("int8", "logits"): Tolerance(atol=None, rtol=0.0, min_argmax_agreement=0.95, max_miou_drop=0.01),
}


def tolerance(precision: str, kind: str = "logits") -> Tolerance:
    try:
        return TOLERANCES[(precision, kind)]
    except KeyError:
        raise KeyError(f"no tolerance for {precision} {kind}; known: {sorted(TOLERANCES)}") from None
