"""Quantization-aware training: fake quantization where the TensorRT placement (``edgeseg.quant.tensorrt``) puts Q/DQ,
so a short fine-tune teaches the weights the rounding TensorRT will apply.

Fake quantization is ``torch.ao.quantization.FakeQuantize``. NVIDIA ModelOpt's torch quantization was the first
choice, but ``modelopt.torch`` 0.47 does not import here without the Hugging Face stack (``huggingface_hub`` and its
HTTP client, for its LLM plugins), which a CNN fine-tune does not need; ModelOpt's ONNX side places the Q/DQ at export.

What is fake-quantized, as TensorRT runs it:
- every Conv/ConvTranspose/Linear input: per-tensor symmetric, its range calibrated by max on the calibration batches
  before the fine-tune and then frozen (TensorRT's max calibration; the export calibrates the same way);
- every such weight: per-channel symmetric, from the weight's own max at each step. A batch norm after the layer
  scales each output channel, which a per-channel symmetric scale follows exactly, so quantizing the unfolded weight is
  quantizing the folded one TensorRT builds.
Residual Adds' second inputs, which the placement quantizes too, are not fake-quantized (they are not modules).
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, MinMaxObserver, PerChannelMinMaxObserver
from torch.nn.utils import parametrize

from edgeseg.errors import EdgeSegError

QUANTIZED_MODULES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                     nn.Linear)
_INPUT = "input_quantizer"


class _WeightQuantizer(nn.Module):
    """A parametrization: the weight the layer computes with is the fake-quantized one; the FP32 original trains."""

    def __init__(self, fq: FakeQuantize):
        super().__init__()
        self.fq = fq

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.fq.observer_enabled[0]:  # the scale of this step's weight, as the export computes it (not a running max)
            self.fq.activation_post_process.reset_min_max_vals()
        return self.fq(weight)


def _range(bits: int) -> tuple[int, int]:
    if not 2 <= bits <= 8:
        raise EdgeSegError(f"{bits}-bit fake quantization", "use 2 to 8 bits (TensorRT runs 8)")
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _quantize_input(module: nn.Module, args):
    return (getattr(module, _INPUT)(args[0]), *args[1:])


def quantized_layers(model: nn.Module) -> list[str]:
    """Names of the layers ``prepare_qat`` fake-quantized."""
    return [name for name, m in model.named_modules() if hasattr(m, _INPUT)]


def prepare_qat(model: nn.Module, bits: int = 8) -> nn.Module:
    """Fake-quantize every Conv/ConvTranspose/Linear input and weight of ``model`` (in place; returned). The input
    ranges still need ``calibrate``; until then the layers compute in float."""
    lo, hi = _range(bits)
    if quantized_layers(model):
        raise EdgeSegError("the model is already prepared for QAT", "prepare a float model")
    layers = [m for m in model.modules() if isinstance(m, QUANTIZED_MODULES)]
    if not layers:
        raise EdgeSegError(f"{type(model).__name__} has no convolution or linear layer to quantize", "use a zoo model")
    for m in layers:
        act = FakeQuantize(observer=MinMaxObserver, quant_min=lo, quant_max=hi, dtype=torch.qint8,
                           qscheme=torch.per_tensor_symmetric)
        # ConvTranspose weights are (in, out, k...): their output channels are axis 1
        axis = 1 if isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)) else 0
        weight = FakeQuantize(observer=PerChannelMinMaxObserver, quant_min=lo, quant_max=hi, dtype=torch.qint8,
                              qscheme=torch.per_channel_symmetric, ch_axis=axis)
        act.disable_fake_quant()  # float until calibrated
        weight.disable_fake_quant()
        m.add_module(_INPUT, act)
        m.register_forward_pre_hook(_quantize_input)
        parametrize.register_parametrization(m, "weight", _WeightQuantizer(weight))
    return model


def _quantizers(model: nn.Module):
    for m in model.modules():
        if hasattr(m, _INPUT):
            yield getattr(m, _INPUT), cast(Any, m).parametrizations.weight[0].fq


@torch.no_grad()
def calibrate(model: nn.Module, batches) -> nn.Module:
    """Set the input ranges of a ``prepare_qat`` model by max over ``batches`` (N×C×H×W arrays or tensors) run in
    float, then freeze them and turn fake quantization on (weights keep following their own max)."""
    quantizers = list(_quantizers(model))
    if not quantizers:
        raise EdgeSegError("the model is not prepared for QAT", "call prepare_qat first")
    if not batches:
        raise EdgeSegError("no calibration batches for QAT", "give at least one image")
    was_training = model.training
    model.eval()
    for act, weight in quantizers:
        act.disable_fake_quant(), weight.disable_fake_quant()
        act.enable_observer(), weight.enable_observer()
        act.activation_post_process.reset_min_max_vals()
    for batch in batches:
        model(torch.as_tensor(np.asarray(batch, np.float32)))
    for act, weight in quantizers:
        act.disable_observer()
        act.enable_fake_quant(), weight.enable_fake_quant()
    model.train(was_training)
    return model


def strip_qat(model: nn.Module) -> nn.Module:
    """A float copy of a ``prepare_qat`` model: the fine-tuned FP32 weights, no quantizers (its state dict is the
    plain model's, so checkpoints and the exporter take it)."""
    plain = copy.deepcopy(model)
    for m in plain.modules():
        if hasattr(m, _INPUT):
            # not parametrize.remove_parametrizations: it deletes the weight property from the Parametrized class,
            # which the deep copy shares with ``model``, and so would break the model still being trained
            weight = cast(Any, m).parametrizations.weight.original
            m.__class__ = type(m).__bases__[0]
            del m._modules["parametrizations"]
            m.weight = nn.Parameter(weight.detach().clone(), requires_grad=bool(weight.requires_grad))
            for key, hook in list(m._forward_pre_hooks.items()):  # the copy's own hook table
                if hook is _quantize_input:
                    del m._forward_pre_hooks[key]
            delattr(m, _INPUT)
    return plain


def export_qat(model: nn.Module, dst: str | Path, calibration: list[np.ndarray], *, meta=None,
               method: str = "minmax", check_data=None, extra: dict | None = None):
    """Export a fine-tuned ``prepare_qat`` model to an explicit-INT8 Q/DQ ONNX ``dst`` that TensorRT reads: the float
    graph (``edgeseg.export``) with Q/DQ placed as TensorRT fuses it (``quantize_tensorrt``), calibrated by max on
    ``calibration``, as the fine-tune was. Metadata: precision int8, ``config.qat`` true. Returns the metadata."""
    from edgeseg.export import export_onnx
    from edgeseg.quant.tensorrt import quantize_tensorrt

    bits = {w.quant_max - w.quant_min + 1 for _, w in _quantizers(model)}
    if bits != {256}:
        raise EdgeSegError(f"the model was fine-tuned for {sorted(int(np.log2(b)) for b in bits)}-bit weights and "
                           "ONNX Q/DQ is INT8", "prepare the model for QAT with bits=8 to export it")
    plain = strip_qat(model).eval()
    sample = torch.as_tensor(np.asarray(calibration[0][:1], np.float32))
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(plain, fp32, meta=meta, sample=sample)
        return quantize_tensorrt(fp32, dst, calibration, method, check_data=check_data,
                                 extra={"qat": True, **(extra or {})})


__all__ = ["QUANTIZED_MODULES", "calibrate", "export_qat", "prepare_qat", "quantized_layers", "strip_qat"]
