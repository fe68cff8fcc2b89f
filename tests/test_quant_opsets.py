"""FP16 and INT8 (per-channel) of every semantic zoo model and of foreign opset-11/12/13 graphs: the
converted file loads in ONNX Runtime and passes parity against the FP32 graph by the tolerance table."""
import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from conftest import SAME_GRAPH_AS, same_graph_reason
from edgeseg.errors import EdgeSegError
from edgeseg.export import export_onnx
from edgeseg.models import create, list_models
from edgeseg.models.realtime import PAPER as REALTIME
from edgeseg.parity import compare, random_batches
from edgeseg.quant import convert_fp16, quantize_int8
from edgeseg.runtime import open_session
from test_check import assert_tensorrt_ready

# The smallest widths the builders allow; models without a width argument are built as they are.
TINY = {"unet": {"base_width": 4}, "unet_padded": {"base_width": 4, "depth": 2}, "segnet": {"width_mult": 0.0625},
        # fc6/fc7 of the VGG FCNs at 64 channels, not 8: at 8 the untrained fc7 is its bias plus a variation ~15x
        # smaller, and a classifier with margins cancels a constant that 7-bit weights do not hold (79-87%).
        **{f"fcn{s}s_vgg16": {"fc_channels": 64} for s in (8, 16, 32)}}
# Five of the six families run in the default suite (< 60 s together, HRNet costs 9-15 s alone); the rest is marked slow.
FAST = {"unet", "unet_padded", "segnet", "deeplabv3plus_resnet18_os16", "fcdensenet56"}
# A random 1×1 classifier reads random directions of its input features, where INT8's rounding noise is as large as
# anywhere, so untrained FCN and HRNet logits differ by less than that noise (fcn8s/16s/32s_resnet18 85.9/84.9/88.8%,
# hrnetv2_w48 93.9% argmax agreement; the whole backbone adds ~1 dB of noise per layer; keeping the score and
# upsampling layers FP32 gained 1.5 points, entropy/percentile calibration none). Training points the classifier at the
# directions in which the features vary: fcn8s_resnet18 trained 300 steps on "synthetic" passes the INT8 row with this
# very quantizer (97.1% on a random 64² input, 98.7% at 128², 99.8% on its validation images calibrated on its training
# ones). These models' classifiers are set so before export, by ``read_principal_directions``; left as it is, an
# untrained fcn32s_vgg16 picks one class everywhere and its agreement means nothing. FCN-VGG16 (fc_channels 64, see
# TINY) then agrees on 97.2/98.9/98.0% (8s/16s/32s).
CLASSIFIER = {**{f"fcn{s}s_{b}": "score_fr" for s in (8, 16, 32) for b in ("resnet18", "vgg16")},
              **{f"hrnetv2_{c}": "classifier" for c in ("w18_small", "w18", "w48")}}
# Its INT8 calibration alone took 17 min; deeplabv3plus_internimage_cpu (same blocks, fewer) stands for it.
TOO_SLOW_TO_EXPORT = {"deeplabv3plus_internimage_t", *REALTIME}  # the real-time zoo: INT8 rows in tests/test_realtime.py
# The legacy exporter is 3-8x faster than dynamo here; SegNet's MaxUnpool exports with dynamo only.
DYNAMO_ONLY = {"segnet"}


def _side(divisor: int, name: str) -> int:
    """48 px rounded up to the model's divisor; the paper U-Net needs 128 for its mirror padding."""
    return 128 if name == "unet" else -(-48 // divisor) * divisor


def read_principal_directions(model: nn.Module, classifier: nn.Conv2d, side: int, spread: float = 3.0) -> None:
    """Point ``classifier`` (a 1×1 convolution) at the directions in which its input features vary most on random
    inputs, one per class, decorrelated and scaled so each class's logits have a standard deviation of ``spread``
    (about a trained net's): trained-like margins for an untrained model."""
    seen = []
    hook = classifier.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.no_grad():
        model(torch.randn(4, 3, side, side))
        hook.remove()
        features = seen[0].transpose(0, 1).flatten(1)  # channels × positions
        variance, directions = torch.linalg.eigh(torch.cov(features))
        k = classifier.out_channels
        weight = spread * directions[:, -k:].T / variance[-k:].clamp_min(1e-12).sqrt()[:, None]
        classifier.weight.copy_(weight.reshape(classifier.weight.shape))
        classifier.bias.copy_(-weight @ features.mean(1))


def _check(fp32, meta, side, tmp_path):
    """FP16 and INT8 of ``fp32`` load and pass parity against it; returns both reports."""
    reference = open_session(fp32)
    assert_tensorrt_ready(fp32)
    calibration = [b for b, _ in random_batches(meta, [(side, side)] * 4, seed=1)]
    reports = {}
    for precision in ("fp16", "int8"):
        out = tmp_path / f"{precision}.onnx"
        if precision == "fp16":
            convert_fp16(fp32, out)
        else:
            quantize_int8(fp32, out, calibration)
        candidate = open_session(out)
        assert candidate.precision == precision
        assert_tensorrt_ready(out, int8=precision == "int8")  # edgeseg check, both targets (tests/test_check.py)
        reports[precision] = compare(reference, candidate, random_batches(meta, [(side, side)]))
        assert reports[precision].passed, f"{meta.model} {reports[precision].summary()}"
    return reports


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.skip(reason=same_graph_reason(n))) if n in SAME_GRAPH_AS
                                  else n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in list_models() if n not in TOO_SLOW_TO_EXPORT])  # Mask R-CNN: elsewhere
def test_zoo_fp16_and_int8_load_and_pass_parity(name, tmp_path):
    model = create(name, num_classes=3, **TINY.get(name, {}))
    side = _side(model.size_divisor, name)
    # Batch-norm statistics from data, as training sets them: with the defaults (mean 0, var 1) a deep random
    # net's activations drift by orders of magnitude, its logits go flat and argmax agreement measures noise.
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(2, 3, side, side))
    model.eval()
    if name in CLASSIFIER:
        read_principal_directions(model, getattr(model, CLASSIFIER[name]), side)
    meta = export_onnx(model, tmp_path / "m.onnx", sample=torch.randn(1, 3, side, side),
                       exporter="dynamo" if name in DYNAMO_ONLY else "legacy")
    reports = _check(tmp_path / "m.onnx", meta, side, tmp_path)
    print(name, "|", " | ".join(r.summary() for r in reports.values()))


class Foreign(nn.Module):
    """A binary-segmentation net as another framework's exporter writes it: BatchNorm (kept: it follows a
    ReLU, so it cannot fold into the conv), ReLU6 (Clip), a bilinear Resize and a softmax output."""

    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b, self.c = nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = F.relu6(self.bn(F.relu(self.a(x))))
        x = self.c(F.relu(self.b(x)))
        return torch.softmax(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), 1)


def _foreign(path, opset: int):
    """A foreign ONNX at ``opset`` from the legacy exporter, described by a sidecar only."""
    net = Foreign().eval()
    with torch.no_grad():  # a trained-looking BatchNorm, not the identity
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 32, 32), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}})
    (path.parent / (path.name + ".json")).write_text(json.dumps({"model": "foreign", "class_names": ["bg", "fg"]}))
    return open_session(path).meta


@pytest.mark.parametrize("opset", [11, 12, 13])
def test_foreign_graph_fp16_and_int8_per_channel(opset, tmp_path):
    path = tmp_path / "foreign.onnx"
    meta = _foreign(path, opset)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Resize", "BatchNormalization", "Clip", "Softmax"} <= ops
    _check(path, meta, 64, tmp_path)
    int8 = onnx.load(str(tmp_path / "int8.onnx"))
    # per-channel weight scales (DequantizeLinear's axis) need opset 13: an older graph was converted
    assert max(o.version for o in int8.opset_import if o.domain in ("", "ai.onnx")) >= 13
    assert any(a.name == "axis" for n in int8.graph.node if n.op_type == "DequantizeLinear" for a in n.attribute)
    fp16 = onnx.load(str(tmp_path / "fp16.onnx"))
    resize = next(n for n in fp16.graph.node if n.op_type == "Resize")
    floats = {t.name: t.data_type for t in fp16.graph.initializer}
    # Resize's roi/scales keep float32 whatever its data is
    assert all(floats.get(name, onnx.TensorProto.FLOAT) == onnx.TensorProto.FLOAT for name in resize.input[1:] if name)


def test_old_opset_falls_back_to_per_tensor_when_it_cannot_convert(tmp_path, monkeypatch):
    from onnx import version_converter

    path = tmp_path / "foreign.onnx"
    meta = _foreign(path, 12)

    def refuse(*a, **k):
        raise RuntimeError("no adapter")

    monkeypatch.setattr(version_converter, "convert_version", refuse)
    with pytest.warns(UserWarning, match="opset 12 and could not be converted.*per-tensor"):
        qmeta = quantize_int8(path, tmp_path / "q.onnx", [b for b, _ in random_batches(meta, [(64, 64)] * 2)])
    assert qmeta.config["per_channel"] is False
    assert open_session(tmp_path / "q.onnx").run(np.zeros((1, 3, 64, 64), np.float32))["logits"].shape == (1, 2, 64, 64)


def test_fp16_that_fails_parity_writes_nothing(tmp_path, monkeypatch):
    """A graph that loads but computes something else is refused, saying what failed and what to do."""
    import edgeseg.quant.fp16 as fp16

    path = tmp_path / "foreign.onnx"
    _foreign(path, 13)
    convert = fp16.to_fp16

    def broken(model):  # negate the classifier after conversion: every decision flips (FP16 is judged by decisions)
        out = convert(model)
        for t in out.graph.initializer:
            if t.name in ("c.weight", "c.bias"):
                t.CopyFrom(onnx.numpy_helper.from_array(-onnx.numpy_helper.to_array(t), t.name))
        return out

    monkeypatch.setattr(fp16, "to_fp16", broken)
    with pytest.raises(EdgeSegError, match="fails its parity check.*nothing was written") as e:
        convert_fp16(path, tmp_path / "h.onnx")
    assert "FP32 graph" in e.value.fix
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".json"] == ["foreign.onnx"]


def test_calibration_error_says_what_went_wrong(tmp_path):
    path = tmp_path / "foreign.onnx"
    _foreign(path, 13)
    with pytest.raises(EdgeSegError) as e:  # a batch the graph cannot take: the method is not the cause
        quantize_int8(path, tmp_path / "q.onnx", [np.zeros((1, 5, 32, 32), np.float32)], "minmax")
    assert "minmax calibration failed on 1×5×32×32 batches" in str(e.value) and "--method" not in e.value.fix
    assert not (tmp_path / "q.onnx").exists()


def _graph(path, opset: int, nodes, initializers):
    """A hand-written ONNX at ``opset``: 1×3×H×W ``input`` -> 1×2×H×W ``logits``, with a sidecar."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    inits = [onnx.numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), k)
             for k, s in (("w1", (2, 3, 3, 3)), ("w2", (2, 2, 3, 3)))]
    inits += [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, "h", "w"])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7), str(path))
    (path.parent / (path.name + ".json")).write_text(json.dumps({"model": "hand", "class_names": ["a", "b"]}))


@pytest.mark.parametrize("opset", [9, 11])
def test_fp16_keeps_non_data_operands_in_their_own_types(opset, tmp_path):
    """Which operands turn FP16 comes from the op schemas: Upsample's and Resize's scales/roi and Pad's pads keep
    their types, Pad's constant value and Clip's bounds (inputs from opset 11) follow the data."""
    from onnx import TensorProto, helper

    path = tmp_path / "hand.onnx"
    conv1 = helper.make_node("Conv", ["input", "w1"], ["c"], pads=[1, 1, 1, 1])
    if opset == 9:  # Pad and Clip take attributes here; Upsample has its scales as an input
        nodes = [conv1, helper.make_node("Conv", ["c", "w2"], ["d"], pads=[1, 1, 1, 1], strides=[2, 2]),
                 helper.make_node("Clip", ["d"], ["k"], min=0.0, max=6.0),
                 helper.make_node("Upsample", ["k", "scales"], ["logits"], mode="linear")]
        inits = {"scales": np.array([1, 1, 2, 2], np.float32)}
    else:
        nodes = [conv1, helper.make_node("Pad", ["c", "pads", "value"], ["p"]),
                 helper.make_node("Conv", ["p", "w2"], ["d"], strides=[2, 2]),
                 helper.make_node("Clip", ["d", "lo", "hi"], ["k"]),
                 helper.make_node("Resize", ["k", "roi", "scales"], ["logits"], mode="linear")]
        inits = {"pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "value": np.array(0.5, np.float32),
                 "lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32),
                 "roi": np.array([], np.float32), "scales": np.array([1, 1, 2, 2], np.float32)}
    _graph(path, opset, nodes, inits)
    convert_fp16(path, tmp_path / "h.onnx")  # verified there: it loads and passes the FP16 parity row
    converted = onnx.load(str(tmp_path / "h.onnx"))
    # the whole chain runs in FP16: one Cast in (the FP32 input), one out (the FP32 output)
    assert [n.op_type for n in converted.graph.node].count("Cast") == 2
    types = {t.name: t.data_type for t in converted.graph.initializer}
    assert types["w1"] == types["w2"] == TensorProto.FLOAT16 and types["scales"] == TensorProto.FLOAT
    if opset == 11:
        assert types["roi"] == TensorProto.FLOAT and types["pads"] == TensorProto.INT64
        assert types["value"] == types["lo"] == types["hi"] == TensorProto.FLOAT16
