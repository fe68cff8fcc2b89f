"""INT8 that keeps its accuracy: per-layer sensitivity, automatic mixed precision, and calibration methods compared.

The model is quantized once (``quantize_qdq``: ONNX Runtime's calibration, the costly part). Every other graph is
derived from that one by graph surgery: a layer (a Conv, ConvTranspose, Gemm or MatMul node, or a group of them)
"stays float" when its inputs are rewired past their QuantizeLinear/DequantizeLinear pairs (activations to the
float tensor before the pair, weights and biases to the float initialisers of the graph that was quantized). So
the one-layer-INT8 and one-layer-float graphs of every layer, and any mixed graph, share one calibration and are
exactly the graphs the full INT8 one holds, less the pairs removed. Excluding nodes in ONNX Runtime's quantizer
(``nodes_to_exclude``) would recalibrate for every graph.

Each graph is scored against the FP32 graph through ``edgeseg.judge`` (the one way of judging), in points
(0-100): mIoU (softmax) or foreground IoU (sigmoid) with ground truth, else their decisions' agreement with FP32;
mask AP with ground truth, else matched detections x their mask agreement with FP32 (instance); PQ against FP32
(panoptic). The drop is FP32's score less the candidate's. Writing the report (markdown, JSON, bar chart) is ``edgeseg.bench.quant_report``'s job.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeseg.errors import EdgeSegError
from edgeseg.export.metadata import ModelMeta, write_metadata
from edgeseg.quant import CALIBRATION_METHODS, _finish, check_batches, open_judged_session, quantize_qdq

QUANTIZABLE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass
class LayerSensitivity:
    layer: str                 # the weight's module path (``backbone.layer1.0.conv1``), or the node name
    nodes: list[str]
    op: str
    drop_alone_int8: float     # points lost when only this layer is INT8 (everything else float)
    drop_alone_float: float    # points lost by the INT8 graph with only this layer kept in float
    gain_in_float: float = 0.0  # the full INT8 graph's drop less ``drop_alone_float``: what keeping it float buys


@dataclass
class MixedGraphs:
    """The INT8 graph of one calibration and what derives the others from it."""
    quantized: onnx.ModelProto
    floats: dict[str, onnx.TensorProto]    # the float graph's initialisers (batch norms folded), by name
    layers: dict[str, list[str]]           # layer (group) -> its node names, in graph order
    meta: ModelMeta
    extra: dict                            # the config quantize_qdq recorded

    def graph(self, float_layers=(), keep_other_qdq: bool = True) -> onnx.ModelProto:
        """The INT8 graph with ``float_layers`` in float; ``keep_other_qdq=False`` also removes the pairs in front of
        every other op (Add, Relu, Concat... in semantic graphs), which with every layer float is the FP32 graph."""
        nodes = {n for layer in float_layers for n in self.layers[layer]}
        layer_nodes = {n for names in self.layers.values() for n in names}
        return _derive(self.quantized, self.floats, nodes, layer_nodes, keep_other_qdq)

    def only_int8(self, layer: str) -> onnx.ModelProto:
        return self.graph([k for k in self.layers if k != layer], keep_other_qdq=False)


def prepare(src, calibration: list[np.ndarray], method: str = "minmax", per_channel: bool = True,
            reduce_range: bool = True, group_depth: int | None = None) -> MixedGraphs:
    """Quantize ``src`` once and find its layers. ``group_depth`` groups layers by the first ``group_depth``
    components of their module path (``backbone.layer1`` at 2): fewer, coarser rows for large models."""
    quantized, pre, meta, extra = quantize_qdq(src, calibration, method, per_channel, reduce_range)
    floats = {t.name: t for t in pre.graph.initializer}
    for k, n in enumerate(quantized.graph.node):  # layers are found by node name: every node gets one
        n.name = n.name or f"{n.op_type}_{k}"
    producers = {o: n for n in quantized.graph.node for o in n.output}
    layers: dict[str, list[str]] = {}
    for n in quantized.graph.node:
        if n.op_type not in QUANTIZABLE_OPS or not any(_dq(producers.get(i)) for i in n.input):
            continue  # a layer ONNX Runtime did not quantize has nothing to keep float
        name = _layer_name(n, producers, floats)
        if group_depth:
            name = ".".join(name.split(".")[:group_depth])
        layers.setdefault(name, []).append(n.name)
    if not layers:
        raise EdgeSegError(f"{src} has no quantized Conv, ConvTranspose, Gemm or MatMul layer", "there is nothing to analyse")
    meta.precision, meta.config = "int8", {**meta.config, **extra}  # weight_bits says how the graphs are judged
    return MixedGraphs(quantized, floats, layers, meta, extra)


def _dq(node: onnx.NodeProto | None) -> onnx.NodeProto | None:
    """``node`` where it is a DequantizeLinear, else None."""
    return node if node is not None and node.op_type == "DequantizeLinear" else None


def _float_name(dq: onnx.NodeProto, floats: dict) -> str | None:
    """The float initialiser a constant DequantizeLinear stands for: ONNX Runtime names the quantized weight
    ``<w>_quantized`` and its output ``<w>_DequantizeLinear_Output`` (a bias's output keeps ``<b>``)."""
    for name in (dq.output[0], dq.output[0].removesuffix("_DequantizeLinear_Output"), dq.input[0].removesuffix("_quantized")):
        if name in floats:
            return name
    return None


def _layer_name(node: onnx.NodeProto, producers: dict, floats: dict) -> str:
    for i in node.input:
        dq = _dq(producers.get(i))
        if dq is not None and dq.input[0] not in producers:  # a constant: the weight (or bias)
            name = _float_name(dq, floats)
            if name:
                return name.removesuffix(".weight").removesuffix(".bias").removeprefix("model.")
    return node.name or node.op_type


def _derive(quantized: onnx.ModelProto, floats: dict, float_nodes: set[str], layer_nodes: set[str],
            keep_other_qdq: bool) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(quantized)
    graph = out.graph
    producers = {o: n for n in graph.node for o in n.output}
    constants = {t.name for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            readers.setdefault(name, []).append(n)
    # Every activation pair belongs to the layers it touches: the layer whose output it quantizes and the layers that
    # read it. It stays while one of them is INT8 and goes with the last of them kept float, so that the pairs ONNX
    # Runtime puts on a layer's output (in front of Relu, Add, Reshape, RoiAlign, Softmax...) leave with the layer
    # and every layer float is the FP32 graph. A pair no layer touches stays unless ``keep_other_qdq`` is False.
    dropped: set[str] = set()  # QuantizeLinear outputs whose pairs go
    for q in graph.node:
        if q.op_type != "QuantizeLinear" or q.input[0] in constants:
            continue
        owners = {producers[q.input[0]].name} if q.input[0] in producers else set()
        owners |= {c.name for dq in readers.get(q.output[0], []) if dq.op_type == "DequantizeLinear"
                   for c in readers.get(dq.output[0], [])}
        owners &= layer_nodes
        if (owners and owners <= float_nodes) or (not owners and not keep_other_qdq):
            dropped.add(q.output[0])
    added: set[str] = set()
    for n in graph.node:
        if n.op_type in _QDQ:
            continue
        for i, name in enumerate(n.input):
            dq = _dq(producers.get(name))
            if dq is None:
                continue
            if dq.input[0] in constants:  # a quantized weight or bias: the float initialiser it came from
                if not (n.name in float_nodes if n.name in layer_nodes else not keep_other_qdq):
                    continue
                original = _float_name(dq, floats)
                if original is None:
                    continue  # nothing to restore it from: it stays INT8 (never seen with ONNX Runtime's names)
                restored = f"{original}__float"
                if restored not in added:
                    graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(floats[original]), restored))
                    added.add(restored)
                n.input[i] = restored
            elif dq.input[0] in dropped:
                n.input[i] = producers[dq.input[0]].input[0]  # the float activation in front of the pair
    _prune(graph)
    return out


def _prune(graph: onnx.GraphProto) -> None:
    """Drop the Q/DQ nodes nothing reads any more, then the initialisers nothing reads."""
    def used() -> set[str]:
        names = {o.name for o in graph.output}
        for n in graph.node:
            names.update(n.input)
            for a in n.attribute:  # names read inside If/Loop bodies
                if a.type == onnx.AttributeProto.GRAPH:
                    names.update(i for m in a.g.node for i in m.input)
        return names

    while True:
        reads = used()
        dead = [k for k, n in enumerate(graph.node) if n.op_type in _QDQ and not any(o in reads for o in n.output)]
        if not dead:
            break
        for k in reversed(dead):
            del graph.node[k]
    reads = used()
    keep = [t for t in graph.initializer if t.name in reads]
    del graph.initializer[:]
    graph.initializer.extend(keep)


class Scorer:
    """Scores graphs against the FP32 one on fixed batches, in points, through ``edgeseg.judge``."""

    def __init__(self, src, meta: ModelMeta, batches: list[tuple[np.ndarray, np.ndarray | None]]):
        from edgeseg.runtime import open_session

        if not batches:
            raise EdgeSegError("no batches to score INT8 on", "give calibration images (--calib-images) or validation data")
        self.meta = meta
        self.batches = batches
        self.reference = open_session(src)
        self._tmp = tempfile.TemporaryDirectory()
        self.runs = 0
        self.seconds = 0.0
        report = self._judge(self.reference)
        self.metric, self.reference_score = _points(report, reference=True)

    def _judge(self, session):
        from edgeseg.judge import compare

        return compare(self.reference, session, self.batches, "int8")

    def score(self, proto: onnx.ModelProto) -> float:
        start = time.perf_counter()
        write_metadata(proto, self.meta)
        path = Path(self._tmp.name) / f"g{self.runs}.onnx"
        onnx.save(proto, str(path))
        points = _points(self._judge(open_judged_session(path, self.meta)))[1]
        path.unlink()
        self.runs += 1
        self.seconds += time.perf_counter() - start
        return points

    def drop(self, proto: onnx.ModelProto) -> float:
        return self.reference_score - self.score(proto)

    def close(self) -> None:
        self._tmp.cleanup()


def _points(report, reference: bool = False) -> tuple[str, float]:
    """(the metric's name, the score in points) of a judge's report; ``reference``: the FP32 graph's own score."""
    if report.kind in ("logits", "binary"):
        binary = report.kind == "binary"
        if report.miou_reference is not None:
            value = report.miou_reference if reference else report.miou_candidate
            return ("foreground IoU" if binary else "mIoU"), 100 * float(np.nan_to_num(value))
        return (("foreground" if binary else "label") + " agreement with FP32",
                100 * (report.foreground_agreement if binary else report.argmax_agreement))
    if report.kind == "instance":
        if report.mask_ap_reference is not None:  # the validation data's instances: the metric that matters
            return "mask AP", 100 * (report.mask_ap_reference if reference else report.mask_ap_candidate)
        matched = report.matched / report.detections if report.detections else 1.0
        return "matched detections × mask agreement with FP32", 100 * matched * report.mask_agreement
    # PQ with FP32's segments as ground truth; where neither graph finds a segment, the ids' agreement
    pq = report.pq_vs_reference
    return "PQ against FP32", 100 * (pq if pq is not None else report.id_agreement)


def _scoring_note(data) -> str:
    return "the validation batches given" if data is not None else "the calibration batches (no validation data given)"


def analyze(src, calibration: list[np.ndarray], data=None, method: str = "minmax", per_channel: bool = True,
            reduce_range: bool = True, group_depth: int | None = None) -> dict:
    """Per-layer INT8 sensitivity of ``src``: for every layer, the drop (points) when it alone is INT8 and when it
    alone stays float, scored on ``data`` ((batch, labels-or-None) pairs) or else the calibration batches. Rows are
    ranked by the drop of the layer alone in INT8. Returns the report (``edgeseg.bench.quant_report.write_sensitivity``
    writes it)."""
    graphs = prepare(src, calibration, method, per_channel, reduce_range, group_depth)
    scorer = Scorer(src, graphs.meta, check_batches(calibration, data))
    try:
        full = scorer.drop(graphs.quantized)
        rows = []
        for layer, nodes in graphs.layers.items():
            alone_float = scorer.drop(graphs.graph([layer]))
            rows.append(LayerSensitivity(layer, nodes, _op_of(graphs.quantized, nodes), scorer.drop(graphs.only_int8(layer)),
                                         alone_float, full - alone_float))
    finally:
        scorer.close()
    rows.sort(key=lambda r: (-r.drop_alone_int8, -r.gain_in_float))
    return {"model": graphs.meta.model, "task": graphs.meta.task, "source": str(src), "metric": scorer.metric,
            "fp32_score": scorer.reference_score, "int8_drop": full, "scored_on": _scoring_note(data),
            "batches": len(scorer.batches), **graphs.extra, "graphs_scored": scorer.runs,
            "seconds": round(scorer.seconds, 2), "layers": [asdict(r) for r in rows]}


def _op_of(proto: onnx.ModelProto, nodes: list[str]) -> str:
    ops = sorted({n.op_type for n in proto.graph.node if n.name in set(nodes)})
    return "+".join(ops)


@dataclass
class MixedResult:
    meta: ModelMeta
    path: Path
    float_layers: list[str]
    drop: float
    int8_drop: float
    metric: str
    tried: list[dict] = field(default_factory=list)  # each graph scored on the way: its float layers and drop

    def as_dict(self) -> dict:
        """The report's ``mixed`` section (``edgeseg.bench.quant_report.sensitivity_markdown``)."""
        return {"path": str(self.path), "float_layers": self.float_layers, "drop": self.drop, "int8_drop": self.int8_drop,
                "max_drop": self.meta.config["max_drop"], "metric": self.metric, "check": self.meta.config["check"],
                "tried": self.tried}


def quantize_mixed(src, dst, calibration: list[np.ndarray], data=None, max_drop: float = 0.5, method: str = "minmax",
                   per_channel: bool = True, reduce_range: bool = True, group_depth: int | None = None,
                   force: bool = False) -> MixedResult:
    """INT8 with the fewest layers kept in float for a drop of at most ``max_drop`` points (scored on ``data``, else
    the calibration batches): layers are kept float greedily, most-gaining first (the gain each alone brings back,
    then its drop alone in INT8), then each kept layer is dropped again where the budget still holds. The layers kept
    float are recorded in the metadata (``config.float_layers``); the graph is checked and written as
    ``quantize_int8``'s are. Raises ``EdgeSegError`` where even every layer but one in float misses the budget."""
    if max_drop < 0:
        raise EdgeSegError(f"max_drop is {max_drop}", "give the largest drop you accept, in points (e.g. 0.5)")
    graphs = prepare(src, calibration, method, per_channel, reduce_range, group_depth)
    batches = check_batches(calibration, data)
    scorer = Scorer(src, graphs.meta, batches)
    tried: list[dict] = []

    def drop_with(kept: list[str]) -> float:
        d = scorer.drop(graphs.graph(kept))
        tried.append({"float_layers": list(kept), "drop": d})
        return d

    try:
        full = drop_with([])
        kept: list[str] = []
        drop = full
        if full > max_drop:
            gains = {layer: full - scorer.drop(graphs.graph([layer])) for layer in graphs.layers}
            alone = {layer: scorer.drop(graphs.only_int8(layer)) for layer in graphs.layers}
            order = sorted(graphs.layers, key=lambda k: (-gains[k], -alone[k]))
            for layer in order[:-1]:  # at most every layer but one in float
                kept.append(layer)
                drop = drop_with(kept)
                if drop <= max_drop:
                    break
            if drop > max_drop:
                raise EdgeSegError(f"{src}: INT8 drops {full:.2f} pts ({scorer.metric}) and even with {len(kept)} of "
                                   f"{len(graphs.layers)} layers kept in float it drops {drop:.2f} pts > the budget "
                                   f"{max_drop:g}", "raise --max-drop, or keep the FP32 (or FP16) graph for this model")
            for layer in list(reversed(kept[:-1])):  # verify: a layer added early may be needless once later ones are in
                trial = [k for k in kept if k != layer]
                d = drop_with(trial)
                if d <= max_drop:
                    kept, drop = trial, d
    finally:
        scorer.close()
    extra = {**graphs.extra, "float_layers": kept, "max_drop": max_drop, "drop": round(drop, 4),
             "drop_metric": scorer.metric, "int8_drop": round(full, 4)}
    from edgeseg.quant import failed_check_path

    meta = _finish(graphs.graph(kept), graphs.meta, "int8", dst, extra, check_loads=True, parity_against=src,
                   check_batches=batches, force=force)
    path = Path(dst) if meta.config["check"]["passed"] else failed_check_path(dst)
    return MixedResult(meta, path, kept, drop, full, scorer.metric, tried)


def compare_calibration(src, calibration: list[np.ndarray], data=None, methods=CALIBRATION_METHODS,
                        per_channel: bool = True, reduce_range: bool = True) -> dict:
    """INT8 of ``src`` calibrated by each of ``methods`` (minmax, entropy, percentile), each scored against FP32 on
    ``data`` (else the calibration batches). Returns {"rows": one per method, "best": the method that drops least};
    a method that fails says why in its row.

    ONNX Runtime's ``quantize_static`` (1.31) builds its entropy calibrator with 128 histogram bins for 128 quantized
    bins and passes no option to change either, so the KL search has one candidate, the whole range: entropy then
    gives minmax's scales (checked scale by scale on a small net). The report says so rather than hide the tie."""
    rows: list[dict] = []
    scorer = None
    try:
        for method in methods:
            start = time.perf_counter()
            try:
                quantized, _, meta, extra = quantize_qdq(src, calibration, method, per_channel, reduce_range)
            except EdgeSegError as e:
                rows.append({"method": method, "score": None, "drop": None, "error": e.what})
                continue
            meta.precision, meta.config = "int8", {**meta.config, **extra}
            scorer = scorer or Scorer(src, meta, check_batches(calibration, data))
            score = scorer.score(quantized)
            rows.append({"method": method, "score": score, "drop": scorer.reference_score - score,
                         "seconds": round(time.perf_counter() - start, 2)})
    finally:
        if scorer is not None:
            scorer.close()
    scored = [r for r in rows if r["drop"] is not None]
    best = min(scored, key=lambda r: r["drop"])["method"] if scored else None
    notes = []
    by_method = {r["method"]: r for r in scored}
    if {"minmax", "entropy"} <= set(by_method) and by_method["minmax"]["score"] == by_method["entropy"]["score"]:
        notes.append("entropy scored exactly as minmax: ONNX Runtime's quantize_static runs its entropy search over "
                     "128 histogram bins for 128 quantized bins, which leaves the whole range (minmax) as its only candidate")
    return {"source": str(src), "metric": scorer.metric if scorer else None, "notes": notes,
            "fp32_score": scorer.reference_score if scorer else None, "scored_on": _scoring_note(data),
            "rows": rows, "best": best}


__all__ = ["LayerSensitivity", "MixedGraphs", "MixedResult", "QUANTIZABLE_OPS", "Scorer", "analyze",
           "compare_calibration", "prepare", "quantize_mixed"]
