"""The command line: each user mistake prints one line naming the problem and the fix, exits non-zero,
shows no traceback and leaves no half-written file."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from edgeseg.export import export_onnx
from edgeseg.models import create
from edgeseg.models.checkpoint import save_checkpoint


def edgeseg(*args, cwd=None):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "edgeseg", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def assert_user_error(result, *words):
    assert result.returncode != 0
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert " -- " in lines[0], "the message must say how to fix it"
    return lines[0]


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = create("fcn8s_resnet18", num_classes=3, in_channels=1)
    export_onnx(model, d / "m.onnx")
    save_checkpoint(d / "m.pt", model, {"class_names": ["bg", "liver", "tumour"], "in_channels": 1, "mean": [0.45],
                                        "std": [0.3], "size_divisor": 32})
    return d


def test_truncated_and_non_onnx_files(small_onnx, tmp_path):
    trunc = tmp_path / "t.onnx"
    trunc.write_bytes((small_onnx / "m.onnx").read_bytes()[:5000])
    assert_user_error(edgeseg("eval", trunc, "--data", "lits"), "t.onnx", "ONNX")
    text = tmp_path / "readme.onnx"
    text.write_text("# not a model\n")
    assert_user_error(edgeseg("eval", text, "--data", "lits"), "readme.onnx")
    assert_user_error(edgeseg("eval", tmp_path / "missing.onnx"), "not found")


def test_image_that_is_not_an_image_and_a_good_image(small_onnx, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG but then garbage")
    out = tmp_path / "out"
    assert_user_error(edgeseg("infer", small_onnx / "m.onnx", bad, "--out-dir", out), "scan.png", "not a readable image")
    assert not out.exists() or not any(out.iterdir())
    good = tmp_path / "slice.png"
    Image.fromarray((np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)).save(good)
    r = edgeseg("infer", small_onnx / "m.onnx", good, "--out-dir", out, "--colour")
    assert r.returncode == 0, r.stderr
    labels = np.asarray(Image.open(out / "slice_labels.png"))
    assert labels.shape == (70, 90) and labels.max() < 3
    assert np.asarray(Image.open(out / "slice_overlay.png")).shape == (70, 90, 3)
    assert (out / "slice_colour.png").is_file()


def test_wrong_channel_input(small_onnx):
    # a 1-channel (CT) model evaluated on 3-channel images
    assert_user_error(edgeseg("eval", small_onnx / "m.onnx", "--data", "synthetic"), "3-channel", "takes 1")


def test_checkpoint_that_is_not_a_checkpoint(small_onnx, tmp_path):
    # Fixed bytes, not os.urandom: 1 random file in 256 starts with pickle's PROTO opcode (0x80), torch.load
    # then warned about the protocol on stderr (a second line) and this test failed once in a while.
    fake = tmp_path / "weights.pt"
    for data in (np.random.default_rng(0).bytes(256), b"\x80\xc0" + bytes(254)):
        fake.write_bytes(data)
        assert_user_error(edgeseg("export", fake, "--out", tmp_path / "x.onnx"), "weights.pt", "not a readable checkpoint")
        assert not (tmp_path / "x.onnx").exists()
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    assert_user_error(edgeseg("eval", plain, "--data", "lits"), "not an edgeseg checkpoint")


def test_quantize_failure_leaves_no_file(small_onnx, tmp_path):
    out = tmp_path / "q.onnx"
    assert_user_error(edgeseg("quantize", small_onnx / "m.onnx", "--out", out, "--calib-data", "nowhere"), "unknown data set")
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


def test_quantize_without_calib_data_names_it(small_onnx, tmp_path):
    """A model that records no training data set: no silent fallback to lits, the one line names --calib-data;
    calibration images of another channel count are named as the calibration data set's."""
    out = tmp_path / "q.onnx"
    assert_user_error(edgeseg("quantize", small_onnx / "m.onnx", "--out", out), "no data set", "--calib-data")
    assert_user_error(edgeseg("quantize", small_onnx / "m.onnx", "--out", out, "--calib-data", "synthetic"),
                      "calibration data set 'synthetic'", "3-channel", "--calib-data")
    assert not out.exists()


def test_missing_data_package(small_onnx, tmp_path):
    # a fresh venv-less interpreter view: hide the installed distribution from importlib.metadata
    code = ("import importlib.metadata as md, sys\n"
            "real = md.distribution\n"
            "def fake(name):\n"
            "    if name == 'liver-ct-segmentation-package': raise md.PackageNotFoundError(name)\n"
            "    return real(name)\n"
            "md.distribution = fake\n"
            "from edgeseg.cli import main\n"
            f"sys.exit(main(['eval', r'{small_onnx / 'm.onnx'}', '--data', 'lits']))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert_user_error(r, "liver-ct-segmentation-package", "pip install --no-deps")


def test_eval_parity_and_export_verbs(small_onnx, tmp_path):
    r = edgeseg("eval", small_onnx / "m.pt", "--data", "lits", "--limit", "2", "--components")
    assert r.returncode == 0, r.stderr
    assert "mIoU" in r.stdout and "liver" in r.stdout
    assert "connected components" in r.stdout and "panoptic PQ" in r.stdout  # LiTS: tumour components are things
    r = edgeseg("parity", small_onnx / "m.pt", small_onnx / "m.onnx", "--data", "lits", "--limit", "2")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "PASS" in r.stdout and "argmax agreement" in r.stdout
    r = edgeseg("export", small_onnx / "m.pt", "--out", tmp_path / "again.onnx")
    assert r.returncode == 0, r.stderr
    assert "PASS" in r.stdout and (tmp_path / "again.onnx").is_file()
    r = edgeseg("zoo", "--size", "256")
    assert r.returncode == 0 and "hrnetv2_w48" in r.stdout


def test_model_args_parse_numbers_booleans_and_class_lists():
    from edgeseg.cli import _kv

    assert _kv(["base_width=16", "dropout=0.5", "batch_norm=false", "thing_classes=1,2", "thing_classes_one=3,", "name=a,b"]) == {
        "base_width": 16, "dropout": 0.5, "batch_norm": False, "thing_classes": [1, 2], "thing_classes_one": [3], "name": "a,b"}


def test_every_verb_has_its_command_and_shares_one_definition_of_common_options():
    # The parser is built per verb from shared option helpers: the same option means the same thing everywhere.
    import argparse

    from edgeseg import cli

    p = cli.build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"zoo", "train", "eval", "export", "quantize", "build", "triton", "serve", "infer",
                                "check", "parity", "bench", "quickstart"}
    options = {}
    for verb, s in sub.choices.items():
        assert s._defaults["fn"] is getattr(cli, f"cmd_{verb}")
        options[verb] = {a.dest: a for a in s._actions}
        assert options[verb]["max_bytes"].type is int  # the memory budget is every verb's
    for verb in ("eval", "infer", "parity"):  # a session's plugin libraries, said once
        assert options[verb]["plugins"].help == cli._PLUGINS_HELP
        assert options[verb]["backend"].default == "auto"
    for verb in ("eval", "parity"):
        assert options[verb]["split"].default == "val" and options[verb]["limit"].type is int
    assert options["quantize"]["precision"].choices == ("int8", "fp16")
    assert options["build"]["precision"].choices == ("fp32", "fp16", "int8")
    a = p.parse_args(["eval", "m.onnx", "--limit", "3", "--plugins", "a.so,b.so", "--max-bytes", "10"])
    assert (a.data, a.split, a.limit, a.plugins, a.max_bytes, a.fn) == ("lits", "val", 3, "a.so,b.so", 10, cli.cmd_eval)
