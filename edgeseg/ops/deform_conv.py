"""Deformable convolution v2 (torchvision's ``deform_conv2d`` signature and semantics: offsets as
(dy, dx) pairs per kernel point and offset group, optional modulation mask, groups)."""
from __future__ import annotations

import torch
import torchvision  # noqa: F401  (imported before any export starts, so the ONNX exporter registers its ops)
from torch import Tensor

from edgeseg.ops.sampling import bilinear_zero


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def output_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def deform_conv2d(input: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                  dilation=1, mask: Tensor | None = None, impl: str = "torch") -> Tensor:
    """N×Cout×Ho×Wo. ``offset``: N×(2·offset_groups·kh·kw)×Ho×Wo; ``mask``: N×(offset_groups·kh·kw)×Ho×Wo."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, cin, h, w = input.shape
    cout, cpg, kh, kw = weight.shape
    k = kh * kw
    if cin % cpg or offset.shape[1] % (2 * k):
        raise ValueError(f"input has {cin} channels, weight takes {cpg} per group; offset has {offset.shape[1]} channels, "
                         f"a multiple of 2·{kh}·{kw} is needed")
    groups, og = cin // cpg, offset.shape[1] // (2 * k)
    if impl == "native":
        from edgeseg.ops import native

        return native.deform_conv2d(input, offset, weight, bias, (sh, sw), (ph, pw), (dh, dw), mask)
    if impl != "torch":
        raise ValueError(f"unknown impl '{impl}'; use 'torch' or 'native'")
    if torch.onnx.is_in_onnx_export():  # torchvision's op exports to ONNX DeformConv; surgery makes it a plugin
        return torchvision.ops.deform_conv2d(input, offset, weight, bias, (sh, sw), (ph, pw), (dh, dw), mask)
    ho, wo = offset.shape[2], offset.shape[3]
    off = offset.reshape(n, og, k, 2, ho, wo)
    ky = (torch.arange(kh, device=input.device) * dh).repeat_interleave(kw).to(input.dtype)
    kx = (torch.arange(kw, device=input.device) * dw).repeat(kh).to(input.dtype)
    gy = (torch.arange(ho, device=input.device) * sh - ph).to(input.dtype)
    gx = (torch.arange(wo, device=input.device) * sw - pw).to(input.dtype)
    y = gy[None, None, None, :, None] + ky[None, None, :, None, None] + off[:, :, :, 0]
    x = gx[None, None, None, None, :] + kx[None, None, :, None, None] + off[:, :, :, 1]
    cg = cin // og
    cols = bilinear_zero(input.reshape(n * og, cg, h, w), y.reshape(n * og, -1), x.reshape(n * og, -1))
    cols = cols.reshape(n, og, cg, k, ho, wo)
    if mask is not None:
        cols = cols * mask.reshape(n, og, 1, k, ho, wo)
    cols = cols.reshape(n, groups, cpg * k, ho * wo)
    out = torch.einsum("ngkl,gok->ngol", cols, weight.reshape(groups, cout // groups, cpg * k))
    out = out.reshape(n, cout, ho, wo)
    return out if bias is None else out + bias[None, :, None, None]
