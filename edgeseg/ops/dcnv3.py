"""DCNv3 as InternImage defines it: the channels split into G groups that share one sampling pattern
each; every output point samples K = kh·kw points at the kernel grid plus learned offsets, weighted by
a modulation that is softmax-normalised over the K points (not sigmoid per point as in DCNv2); the
per-group projection weights are the linear layers around the core (input_proj / output_proj).

Core op layout (channels-last, as InternImage): input N×H×W×C, offset N×Ho×Wo×(G·K·2) holding (dx, dy)
per point, mask N×Ho×Wo×(G·K) already normalised. Sampling point of output (ho, wo), kernel point
(i, j): centre + (i·d − ⌊d(kh−1)/2⌋)·s_off + dy·s_off, with centre = ho·stride − pad + ⌊d(kh−1)/2⌋ and
s_off = ``offset_scale``; bilinear with zero padding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from edgeseg.ops.deform_conv import _pair, output_size
from edgeseg.ops.export import emitting_plugin, plugin_node
from edgeseg.ops.sampling import bilinear_zero


def dcnv3(input: Tensor, offset: Tensor, mask: Tensor, kernel_size=3, stride=1, padding=1, dilation=1, group: int = 1,
          offset_scale: float = 1.0, impl: str = "torch") -> Tensor:
    """N×Ho×Wo×C: the DCNv3 core (see the module docstring for the layout)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n, h, w, c = input.shape
    k = kh * kw
    ho, wo = output_size(h, kh, sh, ph, dh), output_size(w, kw, sw, pw, dw)
    if c % group or offset.shape[-1] != group * k * 2 or mask.shape[-1] != group * k:
        raise ValueError(f"DCNv3 with {group} groups and a {kh}×{kw} kernel needs C divisible by {group}, offset "
                         f"…×{group * k * 2} and mask …×{group * k}; got C={c}, {tuple(offset.shape)}, {tuple(mask.shape)}")
    if impl == "native":
        from edgeseg.ops import native

        return native.dcnv3(input, offset, mask, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, offset_scale)
    if impl != "torch":
        raise ValueError(f"unknown impl '{impl}'; use 'torch' or 'native'")
    if emitting_plugin():
        attrs = dict(kernel=[kh, kw], stride=[sh, sw], padding=[ph, pw], dilation=[dh, dw], group=group,
                     offset_scale=float(offset_scale))
        return plugin_node("EdgeSegDCNv3", [input, offset, mask], attrs, input.dtype, (n, ho, wo, c))
    cy, cx = (dh * (kh - 1)) // 2, (dw * (kw - 1)) // 2
    dev, dt = input.device, input.dtype
    ky = (torch.arange(kh, device=dev) * dh - cy).repeat_interleave(kw).to(dt) * offset_scale
    kx = (torch.arange(kw, device=dev) * dw - cx).repeat(kh).to(dt) * offset_scale
    gy = (torch.arange(ho, device=dev) * sh - ph + cy).to(dt)
    gx = (torch.arange(wo, device=dev) * sw - pw + cx).to(dt)
    off = offset.reshape(n, ho, wo, group, k, 2).permute(0, 3, 4, 1, 2, 5)  # N×G×K×Ho×Wo×2
    y = gy[None, None, None, :, None] + ky[None, None, :, None, None] + off[..., 1] * offset_scale
    x = gx[None, None, None, None, :] + kx[None, None, :, None, None] + off[..., 0] * offset_scale
    cg = c // group
    image = input.permute(0, 3, 1, 2).reshape(n * group, cg, h, w)
    vals = bilinear_zero(image, y.reshape(n * group, -1), x.reshape(n * group, -1)).reshape(n, group, cg, k, ho, wo)
    m = mask.reshape(n, ho, wo, group, k).permute(0, 3, 4, 1, 2)[:, :, None]  # N×G×1×K×Ho×Wo
    out = (vals * m).sum(3)  # N×G×Cg×Ho×Wo
    return out.permute(0, 3, 4, 1, 2).reshape(n, ho, wo, c)


class DCNv3(nn.Module):
    """InternImage's DCNv3 block for a backbone: NCHW in, NCHW out (same size; stride 1).

    input_proj → core(offsets and softmax-normalised modulation predicted from a depth-wise conv + LN +
    GELU of the input) → output_proj. Offsets start at zero and the modulation uniform, so an untrained
    block samples the plain kernel grid."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: int = 1, group: int = 4,
                 offset_scale: float = 1.0, dw_kernel_size: int | None = None, impl: str = "torch"):
        super().__init__()
        if channels % group:
            raise ValueError(f"channels ({channels}) must be divisible by group ({group})")
        dwk = dw_kernel_size or kernel_size
        self.kernel_size, self.dilation, self.group, self.offset_scale, self.impl = kernel_size, dilation, group, offset_scale, impl
        k = kernel_size * kernel_size
        self.dw_conv = nn.Conv2d(channels, channels, dwk, padding=(dwk - 1) // 2, groups=channels)
        self.dw_norm = nn.LayerNorm(channels)
        self.offset = nn.Linear(channels, group * k * 2)
        self.mask = nn.Linear(channels, group * k)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        k = self.kernel_size * self.kernel_size
        nhwc = x.permute(0, 2, 3, 1)
        feat = F.gelu(self.dw_norm(self.dw_conv(x).permute(0, 2, 3, 1)))
        offset = self.offset(feat)
        mask = self.mask(feat).reshape(n, h, w, self.group, k).softmax(-1).reshape(n, h, w, self.group * k)
        pad = self.dilation * (self.kernel_size - 1) // 2
        y = dcnv3(self.input_proj(nhwc), offset, mask, self.kernel_size, 1, pad, self.dilation, self.group,
                  self.offset_scale, impl=self.impl)
        return self.output_proj(y).permute(0, 3, 1, 2)
