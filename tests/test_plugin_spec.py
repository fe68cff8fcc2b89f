"""The node spec has one source, plugins/spec/nodes.json. From it plugins/spec/generate.py writes the C++
header the TensorRT creators and the ONNX Runtime custom ops read (fields, types, counts, ranges,
defaults, required), the surgery's table (edgeseg.export.plugins.PLUGIN_SPEC) and the READMEs' field
tables. These tests check that every generated copy is up to date, that no field list is written by
hand anywhere else, and that each consumer behaves as the table says: required fields are required in
TensorRT, ONNX Runtime and the surgery alike, and a left-out optional field means its default everywhere.
(The creators' side, field by field, is plugins/tests/plugin_host_tests.cpp: test_creators_follow_the_node_spec.)"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeseg.errors import ExportError
from edgeseg.export.plugins import PLUGIN_FIELDS, PLUGIN_SPEC, REQUIRED, _typed
from edgeseg.ops.native import plugin_dir

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
SPEC = json.loads((PLUGINS / "spec" / "nodes.json").read_text())


def test_generated_copies_are_up_to_date():
    run = subprocess.run([sys.executable, str(PLUGINS / "spec" / "generate.py"), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, f"run plugins/spec/generate.py after editing nodes.json:\n{run.stdout}{run.stderr}"


def test_python_table_is_the_spec_field_by_field():
    assert list(PLUGIN_SPEC) == list(SPEC["nodes"])
    for op, node in SPEC["nodes"].items():
        assert list(PLUGIN_SPEC[op]) == [f["name"] for f in node["fields"]], op
        for f in node["fields"]:
            kind, count, rng, default = PLUGIN_SPEC[op][f["name"]]
            assert kind == {"int32": "i", "float32": "f"}[f["type"]]
            assert count == (f["count"] if isinstance(f["count"], int) else None)
            assert list(rng) == SPEC["ranges"][f["range"]]
            assert (default is REQUIRED) == bool(f.get("required"))
            if default is not REQUIRED:
                assert default == f["default"], (op, f["name"])
        assert PLUGIN_FIELDS[op] == {n: (k, c) for n, (k, c, _, _) in PLUGIN_SPEC[op].items()}


def test_no_field_list_is_written_by_hand():
    """The creators, the ORT attribute reads and the READMEs take their fields from the generated copies."""
    for cpp in PLUGINS.glob("*/*_plugin.cpp"):
        text = cpp.read_text()
        assert not re.search(r"PluginFieldType::k(INT32|FLOAT32), *\d", text), f"{cpp}: a hand-written FieldSpec"
        assert "empty() ?" not in text, f"{cpp}: a hand-written default"
    ort = (PLUGINS / "cpu" / "ort_custom_ops.cpp").read_text()
    assert not re.search(r'_attr\(info, kOp, "', ort), "an ORT attribute read with a hand-written name/default"
    assert ort.count("F::kFields[F::") == sum(len(n["fields"]) for n in SPEC["nodes"].values())
    for readme in {n["readme"] for n in SPEC["nodes"].values()}:
        text = (PLUGINS / readme).read_text()
        outside = re.sub(r"<!-- fields .*?<!-- /fields \w+ -->", "", text, flags=re.S)
        assert not re.search(r"^Fields?: ", outside, re.M), f"{readme}: a field list outside the generated tables"


def test_surgery_refuses_a_missing_required_field_and_a_value_out_of_range():
    assert _typed("EdgeSegDCNv3", {"kernel": [3, 3]}) == {"kernel": [3, 3]}
    with pytest.raises(ExportError, match="kernel"):
        _typed("EdgeSegDCNv3", {"stride": [1, 1]})
    with pytest.raises(ExportError, match="num_classes"):
        _typed("EdgeSegPanopticPaste", {"num_thing_classes": 1})
    with pytest.raises(ExportError, match="stride"):
        _typed("EdgeSegDeformConv2d", {"stride": [0, 1]})
    with pytest.raises(ExportError, match="threshold"):
        _typed("EdgeSegPasteMasks", {"threshold": 2.0})


# ---- ONNX Runtime custom ops -----------------------------------------------------------------------------

def _ort():
    ort = pytest.importorskip("onnxruntime")
    lib = plugin_dir() / "libedgeseg_ort.so"
    if not lib.is_file():
        pytest.skip(f"{lib} not built (scripts/build_plugins.sh)")
    return ort, lib


def _inputs(op: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Valid inputs of each node under its required fields (REQUIRED_VALUES) and default optional ones."""
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    if op == "EdgeSegRoIAlign":
        return {"x": f(1, 2, 8, 8), "rois": np.array([[0.5, 1, 6, 7], [2, 2, 5, 4]], np.float32),
                "batch": np.zeros(2, np.int32)}
    if op == "EdgeSegMultilevelRoIAlign":
        return {"rois": np.array([[4, 4, 40, 40], [1, 2, 9, 12]], np.float32), "batch": np.zeros(2, np.int32),
                "f0": f(1, 2, 16, 16), "f1": f(1, 2, 8, 8)}
    if op == "EdgeSegDeformConv2d":
        return {"x": f(1, 2, 8, 8), "w": f(3, 2, 3, 3), "o": f(1, 18, 6, 6), "b": f(3), "m": f(1, 9, 6, 6)}
    if op == "EdgeSegDCNv3":
        return {"x": f(1, 8, 8, 4), "o": f(1, 6, 6, 18), "m": f(1, 6, 6, 9)}
    if op == "EdgeSegPasteMasks":
        return {"masks": rng.random((2, 7, 7), np.float32), "boxes": np.array([[1, 1, 9, 12], [3, 0, 15, 6]], np.float32),
                "image": f(1, 3, 16, 16)}
    if op == "EdgeSegPanopticMerge":  # mask_rule's default 0: the masks pasted into the boxes
        return {"semantic": rng.integers(0, 3, (8, 8)).astype(np.int32), "masks": rng.random((2, 5, 5), np.float32),
                "boxes": np.array([[0, 0, 6, 6], [2, 3, 8, 8]], np.float32), "scores": np.array([0.9, 0.7], np.float32),
                "classes": np.array([0, 1], np.int32)}
    return {"semantic": rng.integers(0, 3, (8, 8)).astype(np.int32), "masks": rng.random((2, 8, 8), np.float32),
            "scores": np.array([0.9, 0.7], np.float32), "classes": np.array([0, 1], np.int32)}


REQUIRED_VALUES = {
    "EdgeSegRoIAlign": {"output_height": 2, "output_width": 3},
    "EdgeSegMultilevelRoIAlign": {"output_height": 2, "output_width": 2, "spatial_scales": [0.25, 0.125],
                                  "first_level": 2},
    "EdgeSegDeformConv2d": {},
    "EdgeSegDCNv3": {"kernel": [3, 3]},
    "EdgeSegPasteMasks": {},
    "EdgeSegPanopticPaste": {"num_classes": 3, "num_thing_classes": 2},
    "EdgeSegPanopticMerge": {"num_classes": 3, "num_thing_classes": 2},
}
OUTPUTS = {"EdgeSegPanopticPaste": ["ids", "segments"], "EdgeSegPanopticMerge": ["ids", "segments"]}


def _session(ort, lib, op: str, names: list[str], attrs: dict):
    from onnx import TensorProto, helper
    outs = OUTPUTS.get(op, ["y"])
    node = helper.make_node(op, names, outs, domain="edgeseg", **attrs)
    types = {"batch": TensorProto.INT32, "semantic": TensorProto.INT32, "classes": TensorProto.INT32,
             "ids": TensorProto.INT32}
    graph = helper.make_graph([node], "spec", [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), None)
                                               for n in names],
                              [helper.make_tensor_value_info(n, types.get(n, TensorProto.FLOAT), None) for n in outs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20), helper.make_opsetid("edgeseg", 1)],
                              ir_version=10)
    so = ort.SessionOptions()
    so.register_custom_ops_library(str(lib))
    so.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def test_required_values_cover_exactly_the_required_fields():
    for op, fields in PLUGIN_SPEC.items():
        assert set(REQUIRED_VALUES[op]) == {n for n, (*_, d) in fields.items() if d is REQUIRED}, op


@pytest.mark.parametrize("op", list(SPEC["nodes"]))
def test_ort_op_defaults_are_the_spec_defaults(op):
    """A node with only its required fields computes exactly what the node with every default written does."""
    ort, lib = _ort()
    feed = _inputs(op, np.random.default_rng(0))
    defaults = {n: d for n, (*_, d) in PLUGIN_SPEC[op].items() if d is not REQUIRED}
    bare = _session(ort, lib, op, list(feed), REQUIRED_VALUES[op]).run(None, feed)
    full = _session(ort, lib, op, list(feed), {**REQUIRED_VALUES[op], **defaults}).run(None, feed)
    for a, b in zip(bare, full):
        np.testing.assert_array_equal(a, b)
    # ... and another value of an optional field is not what was used (the default is really read)
    if op == "EdgeSegDeformConv2d":
        with pytest.raises(Exception, match="offset"):  # the offset is sized for padding 0, the default
            _session(ort, lib, op, list(feed), {"padding": [1, 1]}).run(None, feed)


@pytest.mark.parametrize("op, field", [(op, n) for op, fs in PLUGIN_SPEC.items() for n, (*_, d) in fs.items()
                                       if d is REQUIRED])
def test_ort_op_refuses_a_missing_required_field(op, field):
    """As the TensorRT creator does (ONNX Runtime once defaulted DCNv3's kernel to 3×3, PanopticPaste's
    num_classes to 1, MultilevelRoIAlign's first_level to 2 and RoIAlign's output size to 1×1)."""
    ort, lib = _ort()
    feed = _inputs(op, np.random.default_rng(0))
    attrs = {k: v for k, v in REQUIRED_VALUES[op].items() if k != field}
    with pytest.raises(Exception, match=f"'{field}' is required"):
        _session(ort, lib, op, list(feed), attrs).run(None, feed)
