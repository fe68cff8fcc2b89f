"""Untrusted files, one layer at a time: budgets checked before anything is allocated (checkpoints,
images, metadata), files written atomically with the umask's permissions and cleaned up on SIGTERM,
one-line errors from ONNX Runtime's run and from quantize, plugin libraries never taken from a file."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from edgeseg.data import load_image
from edgeseg.data.folder import load_mask
from edgeseg.errors import BackendError, DataError, EdgeSegError, InputError, ModelError, OnnxFileError
from edgeseg.export.metadata import ModelMeta, read_metadata
from edgeseg.io import atomic_path, check_writable_folder
from edgeseg.models import create
from edgeseg.models.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from edgeseg.models.registry import _BUILDERS, _DEFAULTS, ARG_RANGES, check_args

ROOT = Path(__file__).resolve().parents[1]
GOOD_META = {"class_names": ["bg", "fg"], "in_channels": 1, "mean": [0.5], "std": [0.25]}


# ---------------------------------------------------------------- checkpoints

def test_every_builder_argument_has_a_range():
    import inspect

    for name, fn in _BUILDERS.items():
        for arg in inspect.signature(fn).parameters:
            assert arg in _DEFAULTS[name] or arg in ARG_RANGES, f"{name}: {arg} has no range in ARG_RANGES"


@pytest.mark.parametrize("kwargs, words", [
    ({"base_width": 4096}, "base_width=4096 is outside"),
    ({"base_width": 16.0}, "not of type int"),
    ({"num_classes": 0}, "num_classes=0"),
    ({"in_channels": 10**6}, "in_channels"),
    ({"batch_norm": "yes"}, "batch_norm"),
    ({"depth": True}, "depth"),
    ({"rm_rf": 1}, "takes no argument"),
])
def test_model_arguments_out_of_range_are_refused(kwargs, words):
    with pytest.raises(ModelError, match=words):
        check_args("unet_padded", **{"num_classes": 2, **kwargs})
    with pytest.raises(ModelError, match="fixes backbone"):
        check_args("fcn8s_vgg16", backbone="resnet18")


def _tiny(tmp_path) -> Path:
    model = create("unet_padded", num_classes=2, in_channels=1, base_width=4, depth=2)
    path = tmp_path / "ok.pt"
    save_checkpoint(path, model, GOOD_META)
    return path


def test_a_huge_config_in_a_tiny_checkpoint_is_refused_before_the_model_is_built(tmp_path):
    payload = torch.load(_tiny(tmp_path), weights_only=True)
    # in range argument by argument, but 2e9 values: building it for real would need 8 GB
    payload["config"] = {"name": "unet_padded", "num_classes": 2, "in_channels": 1, "base_width": 128, "depth": 6}
    payload["state_dict"] = {"w": torch.zeros(3)}
    path = tmp_path / "huge.pt"
    torch.save(payload, path)
    assert path.stat().st_size < 4096
    start = time.perf_counter()
    with pytest.raises(ModelError, match=r"describes a model of 1,990,761,756 values but its weights hold 3"):
        load_checkpoint(path)
    assert time.perf_counter() - start < 1.0
    payload["config"]["base_width"] = 4096
    torch.save(payload, path)
    with pytest.raises(ModelError, match="base_width=4096 is outside"):
        load_checkpoint(path)


@pytest.mark.parametrize("change, words", [
    ({"config": None}, "'config' is missing"),
    ({"meta": None}, "'meta' is missing"),
    ({"state_dict": None}, "'state_dict' is missing"),
    ({"config": [1, 2]}, "'config' is a list"),
    ({"config": {"num_classes": 2}}, "no model 'name'"),
    ({"config": {"name": 7}}, "no model 'name'"),
    ({"state_dict": {"w": "not a tensor"}}, "other than named tensors"),
])
def test_checkpoint_structure_is_checked(tmp_path, change, words):
    payload = torch.load(_tiny(tmp_path), weights_only=True)
    for k, v in change.items():
        if v is None:
            del payload[k]
        else:
            payload[k] = v
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=words):
        load_checkpoint(tmp_path / "bad.pt")


def test_checkpoint_meta_is_validated(tmp_path):
    from edgeseg.runtime import meta_from_checkpoint_dict

    model, payload = load_checkpoint(_tiny(tmp_path))
    assert meta_from_checkpoint_dict(payload["config"], payload["meta"]).mean == [0.5]
    with pytest.raises(ModelError, match="'std'"):
        meta_from_checkpoint_dict(payload["config"], {**payload["meta"], "std": [0.0]})
    with pytest.raises(ModelError, match="unknown metadata field 'model_path'"):
        meta_from_checkpoint_dict(payload["config"], {**payload["meta"], "model_path": "x"})


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_never_run(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"format": FORMAT, "config": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_odd_pickle_protocol_bytes_give_no_warning(tmp_path):
    # 1 random file in 256 starts with pickle's PROTO opcode; torch then warned, a second stderr line
    path = tmp_path / "w.pt"
    path.write_bytes(b"\x80\xc0" + bytes(254))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ModelError, match="not a readable checkpoint"):
            load_checkpoint(path)


# ---------------------------------------------------------------- images

def test_pixel_budget_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.new("1", (12000, 12000)).save(big)  # 144 MP in a few kB
    assert big.stat().st_size < 200_000
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        with pytest.raises(DataError, match="12000×12000 = 144,000,000 pixels, over the limit of 100,000,000"):
            load_image(big, 1)
        huge = tmp_path / "huge.png"
        Image.new("1", (30000, 30000)).save(huge)  # past PIL's own bomb limit (2x): DecompressionBombError
        with pytest.raises(DataError, match="pixels"):
            load_image(huge, 1)
    assert time.perf_counter() - start < 5.0
    small = tmp_path / "small.png"
    Image.new("L", (300, 200)).save(small)
    with pytest.raises(DataError, match="over the limit of 50,000"):
        load_image(small, 1, max_pixels=50_000)
    monkeypatch.setenv("EDGESEG_MAX_PIXELS", "1000")
    with pytest.raises(DataError, match="over the limit of 1,000"):
        load_image(small, 1)
    assert load_image(small, 1, max_pixels=60_000).shape == (1, 200, 300)
    monkeypatch.setenv("EDGESEG_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="EDGESEG_MAX_PIXELS"):
        load_image(small, 1)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "YCbCr", "LAB", "I;16", "I", "F"])
def test_every_image_mode_has_a_defined_result(tmp_path, mode):
    # Wide modes (16-bit, signed 32-bit, float) by the image's own range; the rest through Pillow's conversion.
    # Saved as TIFF under a .png name where PNG cannot hold the mode: decoders go by content, not by suffix.
    rng = np.random.default_rng(0)
    if mode in ("I", "F"):
        values = rng.normal(0, 1e6, (6, 5)) if mode == "I" else rng.normal(0, 1e30, (6, 5))
        im = Image.fromarray(values.astype(np.int32 if mode == "I" else np.float32), mode)
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (6, 5)).astype(np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 255, (6, 5, 3)).astype(np.uint8), "RGB").convert(mode)
    path = tmp_path / "x.png"
    im.save(path, format="PNG" if mode in ("1", "L", "LA", "P", "RGBA", "I;16") else "TIFF")
    for channels in (1, 3):
        a = load_image(path, channels)
        assert a.shape == (channels, 6, 5) and a.dtype == np.float32
        assert np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1 + 1e-6, (mode, a.min(), a.max())
    if mode in ("I", "F"):  # signed values are stretched over [0, 1]
        assert a.min() == 0 and a.max() == pytest.approx(1)


def test_model_allocations_are_estimated_before_the_run():
    from edgeseg.runtime.prepost import preprocess, run_bytes

    meta = ModelMeta(model="m", task="instance", class_names=["bg", "a"], in_channels=3, mean=[0.5] * 3, std=[0.25] * 3,
                     max_detections=1000, config={"proposals": 2000})
    assert run_bytes(meta, (1024, 1024)) > 12 * 1000 * 1024 * 1024  # D full-size masks
    with pytest.raises(InputError, match="--max-bytes"):
        preprocess(np.zeros((3, 1024, 1024), np.float32), meta)
    small = ModelMeta(model="m", class_names=["a", "b"], in_channels=1, mean=[0.5], std=[0.25], size_divisor=1024)
    with pytest.raises(InputError, match="100352×1024 input"):  # a 1×100000 strip padded to the divisor
        preprocess(np.zeros((1, 1, 100_000), np.float32), small)


def test_one_bit_masks_are_single_channel(tmp_path):
    path = tmp_path / "m.png"
    bits = np.zeros((6, 8), bool)
    bits[2:4, 3:7] = True
    Image.fromarray(bits).save(path)
    assert Image.open(path).mode == "1"
    mask = load_mask(path, num_classes=2)
    assert mask.dtype == np.int64 and mask.shape == (6, 8) and mask.sum() == 8 and mask.max() == 1
    assert load_image(path, 1).shape == (1, 6, 8)


# ---------------------------------------------------------------- metadata and sidecars

GOOD_SIDECAR = {"model": "foreign", "class_names": ["a", "b"], "in_channels": 1, "mean": [0.5], "std": [0.25],
                "size_divisor": 1, "ignore_index": 255}


@pytest.mark.parametrize("field, value", [
    ("mean", [0.1, 0.2]), ("mean", ["a"]), ("mean", 0.5), ("std", [0.0]), ("std", [-2.0]),
    ("size_divisor", 0), ("size_divisor", 2048), ("size_divisor", 2.0), ("class_names", []),
    ("class_names", "ab"), ("class_names", [1, 2]), ("in_channels", 0), ("in_channels", 65), ("in_channels", True),
    ("ignore_index", "255"), ("task", "detect"), ("precision", "int4"), ("model", ["x"]), ("plugin_path", "/x.so"),
])
def test_every_bad_sidecar_field_is_refused_by_name(tmp_path, field, value):
    sidecar = tmp_path / "m.onnx.json"
    sidecar.write_text(json.dumps({**GOOD_SIDECAR, field: value}))
    from edgeseg.export.metadata import read_sidecar

    with pytest.raises(OnnxFileError) as e:
        read_sidecar(sidecar)
    assert f"'{field}'" in str(e.value) and str(sidecar) in str(e.value)


def test_a_good_sidecar_passes(tmp_path):
    from edgeseg.export.metadata import read_sidecar

    sidecar = tmp_path / "m.onnx.json"
    sidecar.write_text(json.dumps({"model": "foreign", "class_names": ["a", "b"], "size_divisor": 1}))
    assert read_sidecar(sidecar).in_channels == 3  # fields left out take their defaults
    sidecar.write_text(json.dumps(GOOD_SIDECAR))
    assert read_sidecar(sidecar).mean == [0.5]


def test_embedded_metadata_is_validated_and_bounded(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, 4, 4])])
    proto = helper.make_model(graph)
    base = {k: json.dumps(v) for k, v in {**GOOD_SIDECAR, "class_names": ["only"]}.items()}
    for key, value, words in [("std", "[0]", "'std'"), ("size_divisor", "9" * 5000, "edgeseg.size_divisor"),
                              ("config", "[" * 50000, "edgeseg.config"), ("class_names", json.dumps(["x"] * 2000), "class_names"),
                              ("model", '"' + "m" * (2 << 20) + '"', "bytes")]:
        del proto.metadata_props[:]
        for k, v in {**base, key: value}.items():
            proto.metadata_props.add(key="edgeseg." + k, value=v)
        with pytest.raises(OnnxFileError, match=words):
            read_metadata(proto, tmp_path / "m.onnx")


# ---------------------------------------------------------------- files

def test_outputs_get_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            assert (os.stat(tmp).st_mode & 0o777) == 0o600  # mkstemp's
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (os.stat(tmp_path / "a.txt").st_mode & 0o777) == 0o640


def test_an_output_under_a_regular_file_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgeSegError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "file" / "sub" / "out.onnx")
    with pytest.raises(EdgeSegError, match="is a file, not a folder"):
        with atomic_path(tmp_path / "file" / "out.onnx"):
            pass
    check_writable_folder(tmp_path / "new" / "sub" / "out.onnx")  # folders to be made are fine


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT], ids=lambda s: s.name)
def test_a_terminating_signal_mid_write_leaves_no_temporary_file(tmp_path, sig):
    # The CLI's handler raises SystemExit where Python is, so atomic_path's cleanup runs (SIGQUIT: no core dump).
    code = ("import sys, time\n"
            "from edgeseg import cli\n"
            "from edgeseg.io import atomic_path\n"
            "def slow(a):\n"
            "    with atomic_path(sys.argv[1]) as tmp:\n"
            "        tmp.write_bytes(b'half')\n"
            "        print('writing', flush=True)\n"
            "        time.sleep(120)\n"
            "cli.cmd_zoo = slow\n"
            "sys.exit(cli.main(['zoo']))\n")
    target = tmp_path / "out.onnx"
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    assert list(tmp_path.glob(".out.onnx.*.tmp"))
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and "terminated" in err
    assert list(tmp_path.iterdir()) == []


def test_a_signal_a_library_wrapped_in_its_own_error_is_still_one_line(monkeypatch, capsys):
    # Ctrl-C during export: torch's exporter re-raises the KeyboardInterrupt as its own error
    from edgeseg import cli

    def wrapped(a):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise RuntimeError("the exporter failed") from e

    monkeypatch.setattr(cli, "cmd_zoo", wrapped)
    assert cli.main(["zoo"]) == 130
    assert capsys.readouterr().err.strip() == "edgeseg zoo: interrupted"


class _CountsCalls(torch.nn.Module):
    """Python-side state the exporter cannot see: the eager outputs drift from the exported graph's."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return {"logits": self.conv(x) + float(self.calls)}


def test_an_export_that_fails_parity_is_not_left_under_the_requested_name(tmp_path):
    import edgeseg

    meta = ModelMeta(model="counts", class_names=["a", "b"], in_channels=1, mean=[0.5], std=[0.25], size_divisor=1)
    from edgeseg.errors import ExportCheckError

    with pytest.raises(ExportCheckError, match="m.failed.onnx") as raised:  # raised, as the CLI exits 2
        edgeseg.export_onnx(_CountsCalls(), tmp_path / "m.onnx", meta=meta, exporter="legacy",
                            sample=torch.randn(1, 1, 16, 16))
    report = raised.value.report
    assert not report.passed and "\n" not in str(raised.value)
    assert not (tmp_path / "m.onnx").exists()
    assert report.path == tmp_path / "m.failed.onnx" and report.path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.failed.onnx"]


# ---------------------------------------------------------------- one error contract

def test_onnx_runtime_errors_inside_run_are_one_line(tmp_path):
    sys.path.insert(0, str(Path(__file__).parent))
    from hostile_corpus import refuses_at_run

    from edgeseg.runtime import open_session

    session = open_session(refuses_at_run(None, tmp_path))
    with pytest.raises((BackendError, InputError)) as e:
        session.run(np.zeros((1, 1, 8, 8), np.float32))
    assert "ONNX Runtime failed running fixed.onnx on a 1×1×8×8 input" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def tensorrt_flavour(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).parent))
    from hostile_corpus import Fixtures

    f = Fixtures.__new__(Fixtures)
    f.tensorrt = tmp_path_factory.mktemp("trt") / "deform.onnx"
    f._export_tensorrt_flavour()
    return f.tensorrt


def test_quantize_of_a_tensorrt_flavour_graph(tensorrt_flavour, tmp_path):
    from edgeseg.quant import convert_fp16, quantize_int8
    from edgeseg.runtime import open_session

    with pytest.raises(EdgeSegError, match="tensorrt-flavour graph"):
        quantize_int8(tensorrt_flavour, tmp_path / "q8.onnx", [np.zeros((1, 1, 16, 16), np.float32)])
    assert not (tmp_path / "q8.onnx").exists()
    out = tmp_path / "h.onnx"
    try:
        convert_fp16(tensorrt_flavour, out)
    except EdgeSegError as e:  # the custom-op kernels take FP32 only: refused, nothing written
        assert "does not load in ONNX Runtime" in str(e) and not out.exists()
    else:  # or it works: then the file written must run
        assert open_session(out).run(np.zeros((1, 1, 16, 16), np.float32))["logits"].shape == (1, 2, 16, 16)
    assert [p.name for p in tmp_path.iterdir()] in ([], ["h.onnx"])


# ---------------------------------------------------------------- plugin libraries

def _lib(folder: Path, name: str, content: bytes = b"\x7fELF fake") -> tuple[Path, str]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def test_plugin_libraries_come_from_the_plugin_folder_checked_by_hash(tmp_path):
    from edgeseg.runtime.tensorrt_backend import plugin_record, resolve_plugin_libraries

    folder = tmp_path / "plugins"
    lib, digest = _lib(folder, "libedgeseg_trt.so")
    record = [{"name": "libedgeseg_trt.so", "sha256": digest}]
    with pytest.raises(BackendError, match="has no SHA256SUMS"):  # a folder whose build recorded nothing
        resolve_plugin_libraries(record, folder=folder)
    (folder / "SHA256SUMS").write_text(f"{digest}  libedgeseg_trt.so\n")  # what scripts/build_plugins.sh writes
    assert plugin_record([lib]) == record
    assert resolve_plugin_libraries(record, folder=folder) == [lib.resolve()]
    assert resolve_plugin_libraries([], folder=folder) == []
    other, other_digest = _lib(folder, "libother.so", b"a file dropped into the folder")  # not of edgeseg's build
    refused = [
        ([{"name": "libedgeseg_trt.so", "sha256": "0" * 64}], "not one this plugin build recorded"),
        ([{"name": "libother.so", "sha256": other_digest}], "not one this plugin build recorded"),  # its own true hash
        ([{"name": "libedgeseg_trt.so"}], "not a name and a sha256"),
        (["/tmp/evil.so"], "not a name and a sha256"),  # the old format: a path
        ([{"name": "/tmp/evil.so", "sha256": digest}], "not a plain file name"),
        ([{"name": "../evil.so", "sha256": digest}], "not a plain file name"),
        ([{"name": "libmissing.so", "sha256": digest}], "not one this plugin build recorded"),
        ("libedgeseg_trt.so", "not a list"),
    ]
    outside, _ = _lib(tmp_path / "elsewhere", "libevil.so")
    (folder / "liblink.so").symlink_to(outside)
    refused.append(([{"name": "liblink.so", "sha256": digest}], "outside the plugin folder"))
    for recorded, words in refused:
        with pytest.raises(BackendError, match=words):
            resolve_plugin_libraries(recorded, folder=folder)
    lib.write_bytes(b"swapped after the build")  # the pinned name, other content
    with pytest.raises(BackendError, match="sha256 differs"):
        resolve_plugin_libraries(record, folder=folder)


def test_explicit_plugin_libraries_are_hash_checked_against_the_record(tmp_path):
    from edgeseg.runtime.tensorrt_backend import resolve_plugin_libraries

    mine, digest = _lib(tmp_path / "mine", "libedgeseg_trt.so", b"my build")
    other, _ = _lib(tmp_path / "other", "libedgeseg_trt.so", b"another build")
    record = [{"name": "libedgeseg_trt.so", "sha256": digest}]
    assert resolve_plugin_libraries(record, explicit=(str(mine),), folder=tmp_path / "none") == [mine]
    with pytest.raises(BackendError, match="sha256 differs"):
        resolve_plugin_libraries(record, explicit=(str(other),), folder=tmp_path / "none")
    extra, _ = _lib(tmp_path / "x", "libextra.so")  # a library the engine did not record: the caller's choice
    assert resolve_plugin_libraries(record, explicit=(str(mine), str(extra)), folder=tmp_path) == [mine, extra]


# ---------------------------------------------------------------- CI

def test_ci_run_fails_when_pytest_collects_nothing(tmp_path):
    (tmp_path / ".ci").mkdir()
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    stub = tmp_path / "scripts" / "test.sh"
    stub.write_text("#!/usr/bin/env bash\nexit 5\n")  # pytest's 'no tests collected'
    stub.chmod(0o755)
    assert subprocess.run(["bash", str(tmp_path / ".ci" / "run")]).returncode == 5
