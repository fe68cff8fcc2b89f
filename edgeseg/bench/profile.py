"""Where a variant's time goes: per-layer profiles by the backend's own profiler (ONNX Runtime, TensorRT,
torch.profiler), and stage breakdowns by graph cuts (``stage_times``)."""
from __future__ import annotations

import functools
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeseg.bench.timing import clocked, freed_memory_kept
from edgeseg.runtime import Session

PROFILE_TOP = 10  # rows of the per-layer tables (op types, layers) a --profile report keeps per variant


def profile_variant(session: Session, batch: np.ndarray, warmup: int, runs: int, top: int = PROFILE_TOP) -> dict:
    """Where a variant's time goes: ``runs`` runs of ``batch`` after ``warmup`` under the backend's own profiler, in
    a pass of their own (never during the timed runs: profilers add overhead). ONNX Runtime: its profiler
    (``SessionOptions.enable_profiling``) on a second session of the same file, kernel time per node; TensorRT:
    an ``IProfiler`` on a second execution context (``TensorRTSession.profile_layers``), per engine layer, types
    from the engine inspector; PyTorch: ``torch.profiler``'s self time per aten op (op types only: eager PyTorch
    has no layer names). Returns the ``top`` op types and layers by mean time per run, with their share of the
    profiled layers' sum."""
    if session.backend == "onnxruntime":
        tool, layers = "ONNX Runtime profiler, kernel time per node", _onnxruntime_layers(session, batch, warmup, runs)
    elif session.backend == "tensorrt":
        tool, layers = "TensorRT IProfiler, time per engine layer", session.profile_layers(batch, warmup, runs)  # type: ignore[attr-defined]
    else:
        tool, layers = "torch.profiler, self time per op", _torch_layers(session, batch, warmup, runs)
    per_run = {name: (op, ms / runs) for name, (op, ms) in layers.items()}
    total = sum(ms for _, ms in per_run.values())
    ops: dict[str, list] = {}
    for op, ms in per_run.values():
        ops.setdefault(op, [0.0, 0])
        ops[op][0] += ms
        ops[op][1] += 1
    share = (lambda ms: ms / total) if total > 0 else (lambda ms: 0.0)
    by_op = sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]
    per_layer = session.backend in ("onnxruntime", "tensorrt")  # torch.profiler has ops, not layers
    by_layer = sorted(per_run.items(), key=lambda kv: -kv[1][1])[:top] if per_layer else []
    return {"tool": tool, "runs": runs, "layers_ms": total, "layer_count": len(per_run) if per_layer else None,
            "op_types": [{"op": op, "ms": ms, "share": share(ms), "layers": n if per_layer else None} for op, (ms, n) in by_op],
            "layers": [{"name": name, "op": op, "ms": ms, "share": share(ms)} for name, (op, ms) in by_layer]}


def _onnxruntime_layers(session, batch: np.ndarray, warmup: int, runs: int) -> dict[str, tuple[str, float]]:
    """{node: (op type, ms summed over ``runs``)} from ONNX Runtime's profile of a second session (the timed one is
    never profiled); warm-up runs are left out by the profile's own run windows ("model_run" events)."""
    from edgeseg.runtime.onnxruntime_backend import OnnxRuntimeSession

    with tempfile.TemporaryDirectory() as tmp:
        profiled = OnnxRuntimeSession(session.path, session.session.get_providers(),
                                      custom_op_libraries=session.custom_op_libraries,
                                      profile_prefix=str(Path(tmp) / "ort_profile"))
        for _ in range(warmup + runs):
            profiled.run(batch)
        events = json.loads(Path(profiled.session.end_profiling()).read_text())
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                     if e.get("cat") == "Session" and e.get("name") == "model_run")[-runs:]
    layers: dict[str, tuple[str, float]] = {}
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith("_kernel_time") or not any(a <= e["ts"] <= b for a, b in windows):
            continue
        node = name[: -len("_kernel_time")]
        op, ms = layers.get(node, (str(e.get("args", {}).get("op_name", "?")), 0.0))
        layers[node] = (op, ms + e["dur"] / 1000)
    return layers


def _torch_layers(session, batch: np.ndarray, warmup: int, runs: int) -> dict[str, tuple[str, float]]:
    """{aten op: (op, self ms summed over ``runs``)}: device time on CUDA, CPU time on the CPU."""
    from torch.profiler import ProfilerActivity, profile

    cuda = str(getattr(session, "device", "cpu")).startswith("cuda")
    for _ in range(warmup):
        session.run(batch)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for _ in range(runs):
            session.run(batch)
    layers = {}
    for e in prof.key_averages():
        us = e.self_device_time_total if cuda else e.self_cpu_time_total
        if us > 0:
            layers[e.key] = (e.key, us / 1000)
    return layers


def module_stage_times(run: Callable[[], dict | None], stages: dict[str, list], runs: int) -> dict[str, list[float]]:
    """Eager PyTorch's time stage by stage: ``runs`` calls of ``run``, each stage's modules timed from their forward
    pre-hook to their forward hook (summed where a stage has several, or one runs several times). Returns ms per call
    and stage, and ``total`` (the whole call); ``run`` may return stages it timed itself (work outside any module, such
    as a post-processing function), which join them. The eager counterpart of ``stage_times``' graph cuts."""
    acc: dict[str, float] = defaultdict(float)
    handles = []
    for stage, modules in stages.items():
        for m in modules:
            start: list[float] = []  # a stack: a module may run inside another of the same stage
            handles.append(m.register_forward_pre_hook(lambda *_, s=start: s.append(time.perf_counter())))
            handles.append(m.register_forward_hook(
                lambda *_, s=start, k=stage: acc.__setitem__(k, acc[k] + (time.perf_counter() - s.pop()) * 1000)))
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        with freed_memory_kept():
            for _ in range(runs):
                acc.clear()
                t0 = time.perf_counter()
                own = run() or {}
                samples["total"].append((time.perf_counter() - t0) * 1000)
                for k in stages:
                    samples[k].append(acc.get(k, 0.0))
                for k, ms in own.items():
                    samples[k].append(ms)
    finally:
        for h in handles:
            h.remove()
    return dict(samples)


def torchvision_maskrcnn_stage_times(net, x, runs: int) -> dict[str, float]:
    """ms per stage of torchvision's Mask R-CNN eval pipeline on ``x`` (median over ``runs``), under
    ``instance_stage_cuts``' stage names: module hooks (``module_stage_times``); the box head is the RoI heads less
    their RoIAligns and mask head, the paste is timed around ``transform.postprocess`` (a method, not a module), and
    ``total`` is the whole call."""
    import torch
    from torchvision.models.detection.image_list import ImageList

    heads = net.roi_heads

    def run():
        with torch.inference_mode():
            sizes = [tuple(x.shape[-2:])] * x.shape[0]
            features = net.backbone(x)
            dets, _ = heads(features, net.rpn(ImageList(x, sizes), features)[0], sizes)
            t = time.perf_counter()
            net.transform.postprocess(dets, sizes, sizes)
            return {"paste": (time.perf_counter() - t) * 1000}

    s = {k: np.asarray(v) for k, v in module_stage_times(run, {
        "backbone + FPN": [net.backbone], "RPN + NMS (proposals)": [net.rpn], "RoIAlign (box)": [heads.box_roi_pool],
        "RoIAlign (mask)": [heads.mask_roi_pool], "mask head": [heads.mask_head, heads.mask_predictor],
        "roi_heads": [heads]}, runs).items()}
    s["box head + detection NMS"] = s.pop("roi_heads") - s["RoIAlign (box)"] - s["RoIAlign (mask)"] - s["mask head"]
    s[REST_STAGE] = s["total"] - sum(s[k] for k in INSTANCE_STAGES)
    return {k: float(np.median(v)) for k, v in s.items()}


# --- stages by graph cuts ------------------------------------------------------------------------------------------
# A stage is the set of nodes a cut (a few tensors) depends on, minus the earlier stages' nodes. Cuts are found by op
# types and dataflow, never by node names: exported names carry no module path. Each stage becomes a graph of its own,
# run by ONNX Runtime with the timed session's options, so its time is measured, not apportioned by a profiler.

INSTANCE_STAGES = ("backbone + FPN", "RPN + NMS (proposals)", "RoIAlign (box)", "box head + detection NMS",
                   "RoIAlign (mask)", "mask head", "paste")
PANOPTIC_STAGES = ("network", "merge")
REST_STAGE = "other"  # nodes no cut depends on (the other outputs' last steps)
ROI_OPS = {"RoiAlign", "EdgeSegMultilevelRoIAlign", "EdgeSegRoIAlign"}
GEMM_OPS = {"Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
CONV_OPS = {"Conv", "FusedConv"}


def _node_inputs(node) -> list[str]:
    """A node's inputs, with the outer-scope names its subgraphs (Loop, If) read: they are dataflow too."""
    names = [t for t in node.input if t]
    for attr in node.attribute:
        for g in [attr.g] if attr.HasField("g") else list(attr.graphs):
            inner = {o for n in g.node for o in n.output} | {i.name for i in g.input} | {i.name for i in g.initializer}
            names += [t for n in g.node for t in _node_inputs(n) if t not in inner]
    return names


class Dataflow:
    """Who produces and who consumes each tensor of a graph; ancestors and descendants of nodes (by index)."""

    def __init__(self, graph):
        self.nodes = list(graph.node)
        self.inputs = [_node_inputs(n) for n in self.nodes]
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        self.consumers: dict[str, list[int]] = {}
        for i, names in enumerate(self.inputs):
            for t in names:
                self.consumers.setdefault(t, []).append(i)
        self._up: dict[int, frozenset[int]] = {}
        self._down: dict[int, frozenset[int]] = {}

    def ancestors(self, tensors) -> set[int]:
        """The nodes ``tensors`` depend on, their producers included."""
        seen: set[int] = set()
        stack = [self.producer[t] for t in tensors if t in self.producer]
        while stack:
            i = stack.pop()
            if i not in seen:
                seen.add(i)
                stack += [self.producer[t] for t in self.inputs[i] if t in self.producer]
        return seen

    def upstream(self, i: int) -> frozenset[int]:
        """The nodes node ``i`` depends on (itself excluded)."""
        if i not in self._up:
            self._up[i] = frozenset(self.ancestors(self.inputs[i]))
        return self._up[i]

    def downstream(self, i: int) -> frozenset[int]:
        """The nodes that depend on node ``i``."""
        if i not in self._down:
            seen: set[int] = set()
            stack = [c for o in self.nodes[i].output for c in self.consumers.get(o, [])]
            while stack:
                j = stack.pop()
                if j not in seen:
                    seen.add(j)
                    stack += [c for o in self.nodes[j].output for c in self.consumers.get(o, [])]
            self._down[i] = frozenset(seen)
        return self._down[i]

    def earliest(self, candidates) -> int:
        """The candidate with the fewest ancestors: the first in the dataflow."""
        return min(candidates, key=lambda j: len(self.upstream(j)))


def instance_stage_cuts(graph) -> dict[str, list[str]]:
    """Mask R-CNN's stage ends: backbone + FPN at the RoIAlign nodes' feature inputs (and the FPN's extra max-pool
    level); proposals at their box inputs; the box RoIAlign (RoIAlign nodes with no RoIAlign upstream, and the
    multi-level glue) at the input of the first Gemm/MatMul after it; box head + detection NMS + top-k at the mask
    RoIAlign's box inputs; the mask RoIAlign at the input of the first Conv after it; the mask head at the output of
    the last Conv after its ConvTranspose; paste (class channel, sigmoid, paste) at the ``masks`` output."""
    from edgeseg.errors import OnnxFileError

    flow = Dataflow(graph)
    nodes = flow.nodes
    roi = [i for i, n in enumerate(nodes) if n.op_type in ROI_OPS]
    box_roi = [i for i in roi if not flow.upstream(i) & set(roi)]
    mask_roi = [i for i in roi if i not in box_roi]
    if not box_roi or not mask_roi:
        raise OnnxFileError("no box and mask RoIAlign nodes in the graph: it is not a Mask R-CNN graph",
                            "cut instance graphs into stages (--stages) for Mask R-CNN models")

    def plugin(i):  # EdgeSeg*RoIAlign take (boxes, batch indices, features...); ONNX RoiAlign (features, rois, indices)
        return nodes[i].op_type.startswith("EdgeSeg")

    def feats(i):
        return list(nodes[i].input[2:]) if plugin(i) else [nodes[i].input[0]]

    def boxes(i):
        return list(nodes[i].input[:2]) if plugin(i) else list(nodes[i].input[1:3])

    feature_tensors = sorted({t for i in box_roi for t in feats(i)})
    pools = [o for t in feature_tensors for c in flow.consumers.get(t, []) if nodes[c].op_type == "MaxPool"
             for o in nodes[c].output]  # the FPN's last-level max pool (P6, read by the RPN only)
    after_box = set().union(*(flow.downstream(i) for i in box_roi))
    gemm = flow.earliest([j for j in after_box if nodes[j].op_type in GEMM_OPS])
    after_mask = set().union(*(flow.downstream(i) for i in mask_roi))
    convs = [j for j in after_mask if nodes[j].op_type in CONV_OPS]
    deconv = [j for j in after_mask if nodes[j].op_type == "ConvTranspose"]
    last_conv = max([j for j in convs if deconv and j in flow.downstream(deconv[0])] or convs,
                    key=lambda j: len(flow.upstream(j)))
    head_out = list(nodes[last_conv].output)
    # in a graph ONNX Runtime has optimised (NCHWc layout), cut before the ReorderInput feeding a blocked conv and
    # after the ReorderOutput leaving one
    reorder = [c for c in flow.consumers.get(head_out[0], []) if nodes[c].op_type == "ReorderOutput"]
    if reorder:
        head_out = list(nodes[reorder[0]].output)

    def before_reorder(t):
        j = flow.producer.get(t)
        return nodes[j].input[0] if j is not None and nodes[j].op_type == "ReorderInput" else t

    return dict(zip(INSTANCE_STAGES, (
        feature_tensors + pools,                                    # backbone + FPN
        sorted({t for i in box_roi for t in boxes(i)}),             # RPN + NMS (proposals)
        [nodes[gemm].input[0]],                                     # RoIAlign (box)
        sorted({t for i in mask_roi for t in boxes(i)}),            # box head + detection NMS
        [before_reorder(nodes[flow.earliest(convs)].input[0])],    # RoIAlign (mask)
        head_out,                                                   # mask head
        ["masks"],                                                  # paste
    )))


def panoptic_stage_cuts(graph) -> dict[str, list[str]]:
    """The network (backbone, heads, detections, instance masks, the semantic logits) and the panoptic merge's paste.
    The paste starts at the EdgeSegPanopticMerge (or, in older graphs, EdgeSegPanopticPaste) node (tensorrt flavour) or, in the portable flavour, at the NaN test
    of the scores it ranks (``ops.paste.panoptic_paste``'s first step; the detector's own NaN tests come before its
    masks, the paste's comes after). Everything that depends on it is the merge; the network ends at the tensors the
    merge reads from outside itself."""
    from edgeseg.errors import OnnxFileError

    flow = Dataflow(graph)
    nodes = flow.nodes
    entry = [i for i, n in enumerate(nodes) if n.op_type in ("EdgeSegPanopticMerge", "EdgeSegPanopticPaste")]
    if not entry:
        nan = [i for i, n in enumerate(nodes) if n.op_type == "IsNaN"]
        entry = [max(nan, key=lambda i: len(flow.upstream(i)))] if nan else []
    if not entry:
        raise OnnxFileError("no panoptic paste in the graph (EdgeSegPanopticPaste, or the portable paste's "
                            "score ranking)",
                            "cut panoptic graphs exported by edgeseg into stages (--stages)")
    merge = set(entry).union(*(flow.downstream(i) for i in entry))
    frontier = sorted({t for i in merge for t in flow.inputs[i] if flow.producer.get(t) not in merge})
    return dict(zip(PANOPTIC_STAGES, (frontier, ["panoptic", "segments"])))


STAGE_CUTS = {"instance": instance_stage_cuts, "panoptic": panoptic_stage_cuts}


def split_stages(model, cuts: dict[str, list[str]]) -> list[tuple[str, Any]]:
    """``model`` (an onnx.ModelProto) as one graph per stage, in order: each stage's nodes are those its cut depends
    on that no earlier stage took; a last ``REST_STAGE`` takes what is left. A stage reads the graph input and the
    earlier stages' tensors it needs and returns those later stages (or the graph's outputs) need."""
    import onnx
    from onnx import helper

    graph = model.graph
    flow = Dataflow(graph)
    stage_of: dict[int, str] = {}
    for stage, cut in cuts.items():
        for i in sorted(flow.ancestors(cut)):
            stage_of.setdefault(i, stage)
    names = list(cuts) + [REST_STAGE]
    members = {s: [i for i in range(len(flow.nodes)) if stage_of.get(i, REST_STAGE) == s] for s in names}
    # Nodes that read no graph input compute constants (ONNX Runtime folds them): each stage gets its own copy of the
    # ones it reads, so that a folded constant (a large mask, an index table) never crosses a cut as a tensor to copy.
    readers = [i for v in graph.input for i in flow.consumers.get(v.name, [])]
    live = set(readers).union(*(flow.downstream(i) for i in readers))
    for s in names:
        computed = [i for i in members[s] if i in live]
        members[s] = sorted(set(computed) | {j for i in computed for j in flow.upstream(i) if j not in live})
        for i in members[s]:
            if i not in live:
                stage_of.setdefault(i, s)
    weights = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    # the boundary tensors keep their types and shapes (symbolic dims included): without a rank, ONNX Runtime's shape
    # inference on a stage can go wrong (a Resize's sizes computed from an input's Shape)
    info = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    if any(t not in info and t not in weights for ins in flow.inputs for t in ins):  # shapes and types inferred once
        inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
        info.update({v.name: v for v in inferred if v.name not in info})
    parts = []
    for s in names:
        own = set(members[s])
        if not own:
            continue
        produced = [o for i in members[s] for o in flow.nodes[i].output if o]
        needed = dict.fromkeys(t for i in members[s] for t in flow.inputs[i]
                               if flow.producer.get(t) not in own and t not in weights)
        given = [t for t in produced if t in outputs or (flow.producer[t] in live and any(
            stage_of.get(c, REST_STAGE) != s for c in flow.consumers.get(t, [])))]
        used = dict.fromkeys(t for i in members[s] for t in flow.inputs[i] if t in weights)
        g = helper.make_graph([flow.nodes[i] for i in members[s]], s, [info[t] for t in needed],
                              [info[t] for t in given], [weights[t] for t in used])
        part = helper.make_model(g, opset_imports=model.opset_import, ir_version=model.ir_version)
        parts.append((s, part))
    return parts


def stages_missing(session) -> str | None:
    """Why ``session``'s graph is not cut into stages (one line), or None."""
    if session.backend != "onnxruntime":
        return f"stages are cut from ONNX graphs run by ONNX Runtime, not from {session.backend}"
    if session.meta.task not in STAGE_CUTS:
        return f"stages are defined for instance and panoptic graphs, not {session.meta.task} ones"
    return None


def stage_times(session, batch: np.ndarray, warmup: int, rounds: int) -> dict:
    """Where an instance or panoptic graph's time goes, stage by stage: the ONNX file ``session`` runs cut into its
    stages (``STAGE_CUTS`` by the metadata's task, ``split_stages``), each stage a graph and an ONNX Runtime session of
    its own with the timed session's providers, threads and custom-op libraries. A round runs the stages as a chain,
    each fed what the stage before it has just returned, and the whole graph (``session.run``) runs before and after
    every round, so run and stages are timed side by side. Times are medians over ``rounds`` after ``warmup``.
    ``sum_over_run``: the median over rounds of (the round's stages / the mean of the two runs around them), wall time.
    ``best_sum_over_run``: the sum of each stage's least process CPU time (all threads) over the run's least: other
    jobs on a shared machine only ever add time, so the least is the least disturbed, and CPU time does not count the
    waits for a core they cause. What either exceeds 1 by is the cost of cutting: each cut hands tensors from one
    session to the next and stops optimisations across it (about 1 % of the run per cut on a small Mask R-CNN)."""
    import onnx
    import onnxruntime as ort

    from edgeseg.errors import EdgeSegError
    from edgeseg.runtime.onnxruntime_backend import session_options

    why = stages_missing(session)
    if why:
        raise EdgeSegError(why, "use --stages with onnxruntime variants of instance and panoptic models")
    model = onnx.load(str(session.path))
    parts = split_stages(model, STAGE_CUTS[session.meta.task](model.graph))
    del model
    threads = session.session.get_session_options().intra_op_num_threads
    options = session_options(threads, session.custom_op_libraries)
    runners = [(s, ort.InferenceSession(p.SerializeToString(), options, providers=session.session.get_providers()),
                len(p.graph.node)) for s, p in parts]
    del parts
    # OrtValues in and out: a stage's outputs stay where ONNX Runtime put them and feed the next stage hot in the
    # cache, as inside the whole graph, instead of being copied into numpy arrays (a copy the whole graph never makes).
    wiring = [(runner, [i.name for i in runner.get_inputs()], [o.name for o in runner.get_outputs()])
              for _, runner, _ in runners]
    values = {session.input_name: ort.OrtValue.ortvalue_from_numpy(batch.astype(session.input_dtype, copy=False))}

    def stage(k: int) -> None:
        runner, inputs, outputs = wiring[k]
        values.update(zip(outputs, runner.run_with_ort_values(outputs, {n: values[n] for n in inputs})))

    calls = [functools.partial(stage, k) for k in range(len(wiring))]
    with freed_memory_kept():
        for _ in range(warmup):
            session.run(batch)
            for call in calls:
                call()
        runs = [clocked(lambda: session.run(batch))]
        staged = []
        for _ in range(rounds):
            staged.append([clocked(call) for call in calls])
            runs.append(clocked(lambda: session.run(batch)))
    run, times = np.asarray(runs), np.asarray(staged)  # run: (rounds + 1) × (wall, cpu); times: rounds × stages × 2
    ratio = times[:, :, 0].sum(1) / ((run[:-1, 0] + run[1:, 0]) / 2)  # a drifting machine cancels to first order
    run_ms, medians = float(np.median(run[:, 0])), np.median(times[:, :, 0], 0)
    return {"tool": "graph cuts: each stage a graph and an ONNX Runtime session of its own, chained, timed in the same "
                    "rounds as the whole graph", "rounds": rounds, "run_ms": run_ms,
            "stages": [{"stage": s, "nodes": n, "ms": float(ms), "share": float(ms) / run_ms}
                       for (s, _, n), ms in zip(runners, medians)],
            "sum_ms": float(medians.sum()), "sum_over_run": float(np.median(ratio)),
            "best_sum_over_run": float(times[:, :, 1].min(0).sum() / run[:, 1].min())}
