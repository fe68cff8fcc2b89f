"""INT8 that keeps its accuracy (issue 22 A): per-layer sensitivity finds a deliberately fragile layer, mixed precision
meets a budget plain PTQ misses, an INT8 graph that fails its check is not written (``force`` writes it under a
FAILED-CHECK name), and the three calibration methods are compared. Tiny conv nets exported through edgeseg's own
export (so metadata and the export check are real), 64×64 random inputs: the file runs in well under a minute."""
import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgeseg.errors import EdgeSegError
from edgeseg.export import export_onnx
from edgeseg.export.metadata import read_metadata
from edgeseg.judge import compare
from edgeseg.quant import failed_check_path, quantize_int8
from edgeseg.quant.sensitivity import analyze, compare_calibration, prepare, quantize_mixed
from edgeseg.runtime import open_session


def make_fragile(net: nn.Module) -> nn.Module:
    """Layer ``f`` reads a dead channel (``b``'s channel 0 is exactly 0) through outlier weights: in float they cost
    nothing, but each of ``f``'s per-channel weight scales is set by the outlier, so INT8 rounds every other weight of
    ``f`` to 0 and its output loses the image. Every other layer quantizes well."""
    with torch.no_grad():
        net.b.weight[0] = 0
        net.b.bias[0] = 0
        net.f.weight[:, 0] = 50.0
    return net


class TinySeg(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.f, self.c = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 3, 1)
        nn.init.zeros_(self.c.bias)  # the logits follow the image, not a constant bias
        self.edgeseg_config = {"num_classes": 3, "in_channels": 3, "name": "tiny_fragile"}

    def forward(self, x):
        y = torch.relu(self.f(torch.relu(self.b(torch.relu(self.a(x))))))
        return {"logits": self.c(y)}


class TinyDetector(TinySeg):
    """The instance contract at its smallest: one mask per slot from a 1×1 conv, its mean as the score, and a fixed
    box per slot (a vertical band), so detections match slot to slot and only the masks (the network) can move."""
    task = "instance"
    max_detections = 4

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, self.max_detections, 1)
        nn.init.zeros_(self.c.bias)
        self.edgeseg_config = {"num_classes": 2, "in_channels": 3, "name": "tiny_detector"}

    def forward(self, x):
        masks = torch.sigmoid(super().forward(x)["logits"])
        n, d, h, w = masks.shape
        k = torch.arange(d, dtype=x.dtype)
        band = torch.stack([k * w / d, k * 0, (k + 1) * w / d, k * 0 + h], dim=1)
        return {"boxes": band.unsqueeze(0).expand(n, d, 4), "scores": masks.mean((2, 3)),
                "labels": torch.ones(n, d, dtype=torch.int64), "masks": masks,
                "num_detections": torch.full((n,), d, dtype=torch.int64)}


def batches(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 64, 64)).astype(np.float32) for _ in range(n)]


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sens") / "tiny.onnx"
    export_onnx(make_fragile(TinySeg().eval()), path, sample=torch.randn(1, 3, 64, 64))
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sens_det") / "det.onnx"
    report = export_onnx(make_fragile(TinyDetector().eval()), path, sample=torch.randn(1, 3, 64, 64))
    assert report.task == "instance"
    return path


def test_derived_graphs_are_the_fp32_and_int8_graphs(fragile):
    """The surgery itself: every layer float and no pair left is the FP32 graph; no layer float is the INT8 one."""
    graphs = prepare(fragile, batches())
    assert list(graphs.layers) == ["a", "b", "f", "c"]  # module paths, in graph order
    every_float = graphs.graph(list(graphs.layers), keep_other_qdq=False)
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in every_float.graph.node)
    assert graphs.graph([]).graph.node == graphs.quantized.graph.node
    x = batches(1, seed=3)[0]
    onnx.save(every_float, str(fragile.with_name("every_float.onnx")))
    import onnxruntime as ort

    got = ort.InferenceSession(str(fragile.with_name("every_float.onnx"))).run(None, {"input": x})[0]
    assert np.abs(got - open_session(fragile).run(x)["logits"]).max() < 1e-5


def test_every_layer_float_is_the_fp32_graph_with_the_pairs_on_layer_outputs_gone(detector):
    """ONNX Runtime also quantizes a layer's output in front of ops it leaves float (Relu, Sigmoid here; Reshape, Softmax,
    RoiAlign, Add in Mask R-CNN). Such a pair belongs to the layer: it goes when the layer stays float, so the search's
    most-float graph is the FP32 one (issue 22: Mask R-CNN with all 41 layers float still lost 18 of its 22.5 points)."""
    graphs = prepare(detector, batches())
    qdq = ("QuantizeLinear", "DequantizeLinear")
    assert any(n.op_type == "QuantizeLinear" and n.input[0] == c.output[0]  # the case: a pair on a layer's output
               for n in graphs.quantized.graph.node for c in graphs.quantized.graph.node if c.name in graphs.layers["c"])
    every_float = graphs.graph(list(graphs.layers))  # the pairs of no layer kept: nothing else to remove
    assert not any(n.op_type in qdq for n in every_float.graph.node)
    onnx.save(every_float, str(detector.with_name("every_float.onnx")))
    import onnxruntime as ort

    x = batches(1, seed=3)[0]
    got = dict(zip([o.name for o in every_float.graph.output],
                   ort.InferenceSession(str(detector.with_name("every_float.onnx"))).run(None, {"input": x})))
    assert np.abs(got["masks"] - open_session(detector).run(x)["masks"]).max() < 1e-5
    # one layer in INT8: its own input and output pairs stay, every other pair goes
    only_a = graphs.graph([k for k in graphs.layers if k != "a"])
    assert sum(n.op_type == "QuantizeLinear" for n in only_a.graph.node) == 2


def test_sensitivity_ranks_the_fragile_layer_first_and_reports(fragile, tmp_path):
    from edgeseg.bench.quant_report import write_sensitivity

    report = analyze(fragile, batches())
    rows = report["layers"]
    assert [r["layer"] for r in rows][0] == "f" and len(rows) == 4
    assert rows[0]["drop_alone_int8"] > 5 and all(r["drop_alone_int8"] < 2 for r in rows[1:])
    # the whole graph loses what f alone loses; keeping f alone in float brings (nearly) all of it back
    assert report["int8_drop"] > 5 and rows[0]["drop_alone_float"] < 2 and rows[0]["gain_in_float"] > 5
    assert report["metric"] == "label agreement with FP32" and report["graphs_scored"] == 9
    paths = write_sensitivity(report, tmp_path, "tiny_sensitivity")
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and paths[2].read_bytes()[:4] == b"\x89PNG"
    assert json.loads(paths[0].read_text())["layers"][0]["layer"] == "f"
    assert "| 1 | f | Conv | 1 |" in paths[1].read_text()


def test_mixed_precision_meets_the_budget_plain_ptq_misses(fragile, tmp_path):
    with pytest.raises(EdgeSegError, match="fails its parity check.*nothing was written") as e:
        quantize_int8(fragile, tmp_path / "ptq.onnx", batches())  # judged on the calibration batches
    assert "--max-drop" in e.value.fix and not any(tmp_path.iterdir())
    result = quantize_mixed(fragile, tmp_path / "mixed.onnx", batches(), max_drop=1.0)
    assert result.float_layers == ["f"] and result.drop <= 1.0 < result.int8_drop
    meta = read_metadata(onnx.load(str(tmp_path / "mixed.onnx")), tmp_path / "mixed.onnx")
    assert meta.precision == "int8" and meta.config["float_layers"] == ["f"] and meta.config["check"]["passed"]
    # judged afresh on other images: the mixed graph keeps FP32's decisions, three layers still INT8
    proto = onnx.load(str(tmp_path / "mixed.onnx"))
    assert sum(n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized") for n in proto.graph.node) == 3
    row = compare(open_session(fragile), open_session(tmp_path / "mixed.onnx"), [(b, None) for b in batches(2, seed=7)])
    assert row.passed and row.argmax_agreement > 0.98, row.summary()
    with pytest.raises(EdgeSegError, match="even with 3 of 4 layers kept in float"):
        quantize_mixed(fragile, tmp_path / "never.onnx", batches(), max_drop=0.01)
    assert not (tmp_path / "never.onnx").exists()


def test_an_instance_graph_failing_its_check_is_not_written_but_force_names_it(detector, tmp_path):
    dst = tmp_path / "det_int8.onnx"
    with pytest.raises(EdgeSegError, match="mask agreement.*nothing was written"):
        quantize_int8(detector, dst, batches())
    assert not any(tmp_path.iterdir())
    with pytest.warns(UserWarning, match="FAILED-CHECK"):
        meta = quantize_int8(detector, dst, batches(), force=True)
    failed = failed_check_path(dst)
    assert failed.name == "det_int8.FAILED-CHECK.onnx" and failed.exists() and not dst.exists()
    assert meta.config["check"]["passed"] is False
    assert read_metadata(onnx.load(str(failed)), failed).config["check"]["passed"] is False
    # with f kept in float the same detector passes its instance check and is written under its own name
    result = quantize_mixed(detector, dst, batches(), max_drop=10.0)
    assert result.float_layers == ["f"] and result.path == dst and dst.exists(), result.tried


def test_instance_graphs_are_scored_by_mask_ap_where_the_data_has_instances(detector, tmp_path):
    """Validation pairs whose labels are ground-truth instances: the search scores mask AP, not agreement."""
    from edgeseg.metrics.instance import InstanceTruth

    bands = np.zeros((4, 64, 64), bool)
    for k in range(4):
        bands[k, :, 16 * k:16 * (k + 1)] = True
    pairs = [(b, [InstanceTruth(bands, np.ones(4, np.int64))]) for b in batches()]
    result = quantize_mixed(detector, tmp_path / "det.onnx", batches(), data=pairs, max_drop=100.0, force=True)
    assert result.metric == "mask AP" and result.meta.config["drop_metric"] == "mask AP"
    assert result.tried[0]["float_layers"] == [] and result.float_layers == []


def test_calibration_comparison_has_a_row_per_method(fragile, tmp_path):
    from edgeseg.bench.quant_report import calibration_markdown

    result = compare_calibration(fragile, batches())
    assert [r["method"] for r in result["rows"]] == ["minmax", "entropy", "percentile"]
    assert all(r["drop"] is not None and 0 <= r["score"] <= 100 for r in result["rows"])
    assert result["best"] == min(result["rows"], key=lambda r: r["drop"])["method"]
    assert f"Best: {result['best']}." in "\n".join(calibration_markdown(result))
