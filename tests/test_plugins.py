"""The TensorRT plugin library: compiled here with nvcc against TensorRT 10.x headers and loaded into
the TensorRT lean runtime's plugin registry on the CPU (no GPU: creators and fields only, never an
engine), plus the C++ host tests of shapes, formats and payloads."""
import subprocess

import numpy as np
import pytest

from edgeseg.export.plugins import PLUGIN_SPEC
from edgeseg.ops.native import plugin_dir

LIB = plugin_dir() / "libedgeseg_trt.so"
HOST_TESTS = plugin_dir() / "plugin_host_tests"
needs_lib = pytest.mark.skipif(not LIB.is_file(), reason=f"{LIB} not built (scripts/build_plugins.sh needs nvcc)")

# The creators' field names, in order, from the one node spec (plugins/spec/nodes.json via PLUGIN_SPEC).
EXPECTED_FIELDS = {op: list(fields) for op, fields in PLUGIN_SPEC.items()}


@pytest.fixture(scope="module")
def registry():
    trt = pytest.importorskip("tensorrt_lean", reason="tensorrt-lean-cu13 is not installed (x86_64 dev extra)")
    reg = trt.get_plugin_registry()
    if not any(c.name.startswith("EdgeSeg") for c in reg.all_creators):
        assert reg.load_library(str(LIB)) is not None
    return trt, reg


@needs_lib
def test_every_creator_is_found_by_name_and_version_and_lists_its_fields(registry):
    trt, reg = registry
    for name, fields in EXPECTED_FIELDS.items():
        creator = reg.get_creator(name, "1")
        assert creator is not None, name
        assert creator.plugin_version == "1" and creator.plugin_namespace == ""
        assert [f.name for f in creator.field_names] == fields


def _field(trt, name, values, kind):
    dtype, ftype = (np.int32, trt.PluginFieldType.INT32) if kind == "i" else (np.float32, trt.PluginFieldType.FLOAT32)
    return trt.PluginField(name, np.asarray(values, dtype), ftype)


@needs_lib
def test_creators_make_plugins_from_valid_fields_and_refuse_invalid_ones(registry):
    trt, reg = registry
    valid = {
        "EdgeSegRoIAlign": [("output_height", [7], "i"), ("output_width", [7], "i"), ("spatial_scale", [0.25], "f")],
        "EdgeSegMultilevelRoIAlign": [("output_height", [7], "i"), ("output_width", [7], "i"),
                                      ("spatial_scales", [1 / 4, 1 / 8, 1 / 16, 1 / 32], "f"), ("first_level", [2], "i")],
        "EdgeSegDeformConv2d": [("stride", [1, 1], "i"), ("padding", [1, 1], "i"), ("groups", [1], "i")],
        "EdgeSegDCNv3": [("kernel", [3, 3], "i"), ("padding", [1, 1], "i"), ("group", [4], "i")],
        "EdgeSegPasteMasks": [("threshold", [0.5], "f")],
        "EdgeSegPanopticPaste": [("num_classes", [133], "i"), ("num_thing_classes", [80], "i")],
        "EdgeSegPanopticMerge": [("num_classes", [133], "i"), ("num_thing_classes", [80], "i"), ("mask_rule", [1], "i")],
    }
    invalid = {
        "EdgeSegRoIAlign": [("output_height", [0], "i"), ("output_width", [7], "i")],
        "EdgeSegMultilevelRoIAlign": [("output_height", [7], "i"), ("output_width", [7], "i"),
                                      ("spatial_scales", [1 / 4, 1 / 4], "f"), ("first_level", [2], "i")],
        "EdgeSegDeformConv2d": [("stride", [0, 1], "i")],
        "EdgeSegDCNv3": [("padding", [1, 1], "i")],  # kernel is required
        "EdgeSegPasteMasks": [("threshold", [3.0], "f")],
        "EdgeSegPanopticPaste": [("num_classes", [10], "i"), ("num_thing_classes", [11], "i")],
        "EdgeSegPanopticMerge": [("num_classes", [10], "i"), ("num_thing_classes", [2], "i"), ("mask_rule", [2], "i")],
    }
    for name in EXPECTED_FIELDS:
        creator = reg.get_creator(name, "1")
        fc = trt.PluginFieldCollection([_field(trt, *f) for f in valid[name]])
        assert creator.create_plugin("ok", fc, trt.TensorRTPhase.BUILD) is not None, name
        bad = trt.PluginFieldCollection([_field(trt, *f) for f in invalid[name]])
        assert creator.create_plugin("bad", bad, trt.TensorRTPhase.BUILD) is None, name


@pytest.mark.skipif(not HOST_TESTS.is_file(), reason=f"{HOST_TESTS} not built (scripts/build_plugins.sh needs nvcc)")
def test_plugin_host_tests():
    """Shapes over dynamic dims, format support, serialize -> deserialize, random and truncated payloads."""
    run = subprocess.run([str(HOST_TESTS)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all plugin host tests passed" in run.stdout


@needs_lib
def test_the_export_field_table_is_the_creators_fields(registry):
    """The surgery passes type attributes from edgeseg.export.plugins.PLUGIN_FIELDS: it must be what the creators list."""
    from edgeseg.export.plugins import PLUGIN_FIELDS

    trt, reg = registry
    kinds = {trt.PluginFieldType.INT32: "i", trt.PluginFieldType.FLOAT32: "f"}
    for name, fields in PLUGIN_FIELDS.items():
        creator = reg.get_creator(name, "1")
        listed = {f.name: kinds[f.type] for f in creator.field_names}
        assert listed == {k: kind for k, (kind, _) in fields.items()}, name


def test_readme_loads_the_library_the_way_it_registers_and_targets_only_tensorrt10_jetsons():
    """The library registers through getCreators only: trtexec loads it with --dynamicPlugins (and ships it
    with --setPluginsToSerialize), never --staticPlugins; IPluginV3 on Jetson is JetPack 6 = Orin (sm_87)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "plugins"
    readme = (root / "README.md").read_text()
    assert "--staticPlugins=" not in readme
    assert "--dynamicPlugins=build/plugins/libedgeseg_trt.so" in readme
    assert "--setPluginsToSerialize=build/plugins/libedgeseg_trt.so" in readme
    cmake = (root / "CMakeLists.txt").read_text()
    archs = [line for line in cmake.splitlines() if "set(CMAKE_CUDA_ARCHITECTURES" in line]
    assert archs and not any(a in line for line in archs for a in (" 53", " 72"))
