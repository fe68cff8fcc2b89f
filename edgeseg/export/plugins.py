"""The ``tensorrt`` flavour: graph-surgery passes that turn a portable graph into one with edgeseg
plugin nodes, named, versioned and attributed as the plugin creators in ``plugins/`` expect.

- ``RoiAlign`` -> ``EdgeSegRoIAlign`` and ``DeformConv`` -> ``EdgeSegDeformConv2d`` (any graph, ours or
  a user's: torchvision's roi_align and deform_conv2d export to these standard ops);
- the ``edgeseg::EdgeSeg*`` nodes the ops emit while exporting the tensorrt flavour (ops with no standard
  ONNX equivalent) are checked against the same field table and completed.

Every plugin node gets ``plugin_version`` / ``plugin_namespace`` (what TensorRT's ONNX parser reads).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from edgeseg.errors import ExportError
from edgeseg.export.surgery import _to_proto
from edgeseg.ops.export import PLUGIN_DOMAIN, PLUGIN_VERSION

# The creators' fields: name -> (kind, count). "i" int32, "f" float32; count None = a list of any length.
PLUGIN_FIELDS: dict[str, dict[str, tuple[str, int | None]]] = {
    "EdgeSegRoIAlign": {"output_height": ("i", 1), "output_width": ("i", 1), "sampling_ratio": ("i", 1),
                        "spatial_scale": ("f", 1), "aligned": ("i", 1)},
    "EdgeSegMultilevelRoIAlign": {"output_height": ("i", 1), "output_width": ("i", 1), "sampling_ratio": ("i", 1),
                                  "aligned": ("i", 1), "spatial_scales": ("f", None), "canonical_scale": ("f", 1),
                                  "canonical_level": ("i", 1), "first_level": ("i", 1)},
    "EdgeSegDeformConv2d": {"stride": ("i", 2), "padding": ("i", 2), "dilation": ("i", 2), "groups": ("i", 1),
                            "offset_groups": ("i", 1)},
    "EdgeSegDCNv3": {"kernel": ("i", 2), "stride": ("i", 2), "padding": ("i", 2), "dilation": ("i", 2), "group": ("i", 1),
                     "offset_scale": ("f", 1)},
    "EdgeSegPasteMasks": {"threshold": ("f", 1)},
    "EdgeSegPanopticPaste": {"num_classes": ("i", 1), "num_thing_classes": ("i", 1), "overlap_threshold": ("f", 1),
                             "min_stuff_area": ("i", 1), "score_threshold": ("f", 1)},
}
_BOOKKEEPING = {"plugin_version", "plugin_namespace"}


def _typed(op: str, attrs: dict) -> dict:
    """``attrs`` converted to the creator's field types; an unknown or mistyped field is an export bug."""
    spec = PLUGIN_FIELDS[op]
    out = {}
    for name, value in attrs.items():
        if name in _BOOKKEEPING:
            continue
        if name not in spec:
            raise ExportError(f"{op} has no field '{name}' (it has {', '.join(spec)})", "report this as an edgeseg bug")
        kind, count = spec[name]
        values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
        if count is not None and len(values) != count:
            raise ExportError(f"{op} field '{name}' takes {count} value(s), got {len(values)}", "report this as an edgeseg bug")
        values = [int(v) for v in values] if kind == "i" else [float(v) for v in values]
        out[name] = values if (count is None or count > 1) else values[0]
    return out


def _plugin(node: gs.Node, op: str, inputs, attrs: dict) -> None:
    node.op, node.domain = op, PLUGIN_DOMAIN
    node.inputs = list(inputs)
    node.attrs = {**_typed(op, attrs), "plugin_version": PLUGIN_VERSION, "plugin_namespace": ""}


def _int32(graph: gs.Graph, tensor: gs.Tensor, name: str) -> gs.Tensor:
    out = gs.Variable(f"{name}_int32", dtype=np.int32, shape=tensor.shape)
    graph.nodes.append(gs.Node("Cast", name=f"{name}_to_int32", attrs={"to": onnx.TensorProto.INT32},
                               inputs=[tensor], outputs=[out]))
    return out


def _roi_align(graph: gs.Graph, node: gs.Node) -> None:
    a = node.attrs
    if a.get("mode", "avg") != "avg":
        raise ExportError(f"RoiAlign '{node.name}' uses mode={a['mode']}", "only average RoIAlign has a plugin; keep the portable flavour")
    aligned = {"half_pixel": 1, "output_half_pixel": 0}[a.get("coordinate_transformation_mode", "half_pixel")]
    x, rois, batch = node.inputs
    _plugin(node, "EdgeSegRoIAlign", [x, rois, _int32(graph, batch, node.name or "roi_align")],
            dict(output_height=a.get("output_height", 1), output_width=a.get("output_width", 1),
                 sampling_ratio=a.get("sampling_ratio", 0) or -1, spatial_scale=a.get("spatial_scale", 1.0), aligned=aligned))


def _deform_conv(graph: gs.Graph, node: gs.Node) -> None:
    a = node.attrs
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise ExportError(f"DeformConv '{node.name}' has asymmetric pads {pads}", "use symmetric padding for the plugin")
    inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
    x, w, offset, bias, mask = inputs
    # An absent bias or mask is an empty tensor: the plugin and the custom op read it as "none".
    empty = [gs.Constant(f"{node.name}_{n}_none", np.zeros(0, np.float32)) for n in ("bias", "mask")]
    bias = bias if bias is not None and bias.name else empty[0]
    mask = mask if mask is not None and mask.name else empty[1]
    _plugin(node, "EdgeSegDeformConv2d", [x, w, offset, bias, mask],
            dict(stride=a.get("strides", [1, 1]), padding=pads[:2], dilation=a.get("dilations", [1, 1]),
                 groups=a.get("group", 1), offset_groups=a.get("offset_group", 1)))


def to_plugins(model: onnx.ModelProto) -> onnx.ModelProto:
    """The tensorrt flavour of ``model``: standard ops with plugins swapped for them, emitted plugin nodes
    checked and completed, and the ``edgeseg`` opset imported."""
    graph = gs.import_onnx(model)
    for node in list(graph.nodes):
        if node.op == "RoiAlign" and node.domain in (None, "", "ai.onnx"):
            _roi_align(graph, node)
        elif node.op == "DeformConv" and node.domain in (None, "", "ai.onnx"):
            _deform_conv(graph, node)
        elif node.domain == PLUGIN_DOMAIN:
            if node.op not in PLUGIN_FIELDS:
                raise ExportError(f"unknown plugin node {node.op}", f"known: {', '.join(PLUGIN_FIELDS)}")
            _plugin(node, node.op, node.inputs, node.attrs)
    graph.cleanup().toposort()
    proto = _to_proto(graph, model)
    if not any(o.domain == PLUGIN_DOMAIN for o in proto.opset_import):
        proto.opset_import.append(onnx.helper.make_opsetid(PLUGIN_DOMAIN, 1))
    return proto


def plugin_nodes(model: onnx.ModelProto) -> list[str]:
    """The plugin op types a graph holds (empty for a portable graph)."""
    return [n.op_type for n in model.graph.node if n.domain == PLUGIN_DOMAIN]
