"""Bilinear sampling with zero padding, as torchvision's deform_conv2d and grid_sample(zeros) define it:
each of the four neighbours outside the image contributes 0; a point at or beyond one pixel outside is 0."""
from __future__ import annotations

import torch
from torch import Tensor


def bilinear_zero(image: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """``image`` B×C×H×W sampled at ``y``/``x`` (B×S, pixel-index coordinates) -> B×C×S. Differentiable."""
    b, c, h, w = image.shape
    flat = image.reshape(b, c, h * w)
    y0, x0 = y.floor(), x.floor()
    ly, lx = y - y0, x - x0
    inside = (y > -1) & (y < h) & (x > -1) & (x < w)
    out = image.new_zeros(b, c, y.shape[1])
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yy, xx = y0 + dy, x0 + dx
            ok = inside & (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= w - 1)
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            v = flat.gather(2, idx[:, None, :].expand(b, c, idx.shape[1]))
            out = out + v * (wy * wx * ok)[:, None, :]
    return out
