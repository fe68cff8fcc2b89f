"""Bring your own ONNX: a foreign model (legacy exporter, opset 12, BGR, mean/std 0.5, one sigmoid channel,
threshold 0.3) with a sidecar, on a binary-mask folder, checked against this file's own numpy arithmetic."""
import json
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from edgeseg.errors import OnnxFileError
from edgeseg.export.metadata import read_sidecar
from test_cli import assert_user_error

SIZES = [(32, 32), (64, 32), (32, 64), (64, 64)]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter is the point here


def edgeseg_here(capsys, *args):
    """The CLI's main in this process (no interpreter start-up, so fast), answering like subprocess.run."""
    from edgeseg.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as e:  # parity exits 1 on FAIL
        code = e.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


class Net(nn.Module):
    """A tiny conv net; ``layout`` NHWC takes and gives channels-last tensors, ``stride`` 2 halves the output."""

    def __init__(self, out_channels=1, sigmoid=True, stride=1, layout="NCHW", seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, stride=stride), nn.Tanh(), nn.Conv2d(6, out_channels, 1))
        self.sigmoid, self.layout = sigmoid, layout

    def forward(self, x):
        if self.layout == "NHWC":
            x = x.permute(0, 3, 1, 2)
        y = self.body(x)
        y = torch.sigmoid(y) if self.sigmoid else y
        return y.permute(0, 2, 3, 1) if self.layout == "NHWC" else y


def write_foreign(path, net, sidecar, sample_hw=(32, 32), dynamic=True, input_name="image", output_name="prob"):
    """The user's file: plain legacy export at opset 12, no edgeseg metadata, plus ``<path>.json``."""
    shape = (1, *sample_hw, 3) if net.layout == "NHWC" else (1, 3, *sample_hw)
    spatial = (1, 2) if net.layout == "NHWC" else (2, 3)
    axes = {input_name: {0: "n", spatial[0]: "h", spatial[1]: "w"},
            output_name: {0: "n", spatial[0]: "oh", spatial[1]: "ow"}} if dynamic else None
    torch.onnx.export(net.eval(), (torch.randn(shape),), str(path), opset_version=12, dynamo=False,
                      input_names=[input_name], output_names=[output_name], dynamic_axes=axes)
    (path.parent / (path.name + ".json")).write_text(json.dumps(sidecar))
    return path


BINARY_SIDECAR = {"model": "foreign_binary", "class_names": ["background", "foreground"], "channel_order": "BGR",
                  "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "output_kind": "sigmoid_binary", "threshold": 0.3}


def run_ort(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


def numpy_foreground(path, rgb):
    """The model's decision by hand: HxWx3 uint8 RGB -> BGR, /255, (x - 0.5) / 0.5, NCHW, > 0.3."""
    x = rgb[..., ::-1].astype(np.float32) / 255.0
    x = ((x - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()
    return run_ort(path, x)[0, 0] > 0.3


@pytest.fixture(scope="module")
def byo(tmp_path_factory):
    d = tmp_path_factory.mktemp("byo")
    model = write_foreign(d / "foreign.onnx", Net(), BINARY_SIDECAR)
    root = d / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\nforeground\n")
    rng = np.random.default_rng(0)
    images, masks = [], []
    for i, (h, w) in enumerate(SIZES):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = rng.random((h, w)) < 0.4
        Image.fromarray(rgb).save(root / "images" / f"im{i}.png")
        if i == 0:
            Image.fromarray(mask).save(root / "masks" / f"im{i}.png")  # 1-bit
            assert Image.open(root / "masks" / f"im{i}.png").mode == "1"
        else:
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"im{i}.png")  # 0 / 255
        images.append(rgb)
        masks.append(mask)
    return {"dir": d, "model": model, "root": root, "images": images, "masks": masks}


def test_binary_folder_reads_0_255_and_1_bit_masks(byo):
    from edgeseg.data import get_dataset

    ds = get_dataset(f"folder:{byo['root']}", "val")
    assert ds.info.notes["unsplit"] and ds.info.notes["binary_masks"]
    for i, mask in enumerate(byo["masks"]):
        assert np.array_equal(ds.raw(i)[1], mask.astype(np.int64))


def test_eval_equals_numpy_foreground_iou(byo, capsys):
    from edgeseg.data import get_dataset
    from edgeseg.evaluate import evaluate
    from edgeseg.runtime import open_session

    inter = union = 0
    for rgb, mask in zip(byo["images"], byo["masks"]):
        pred = numpy_foreground(byo["model"], rgb)
        inter += int((pred & mask).sum())
        union += int((pred | mask).sum())
    iou = inter / union
    assert 0.05 < iou < 0.95  # neither all background nor all foreground
    scores = evaluate(open_session(byo["model"]), get_dataset(f"folder:{byo['root']}", "val"), progress=False)
    assert scores.per_class_iou[1] == iou
    r = edgeseg_here(capsys, "eval", byo["model"], "--data", f"folder:{byo['root']}")
    assert r.returncode == 0, r.stderr
    assert f"scoring {len(SIZES)} image(s) of {byo['root'] / 'images'}" in r.stdout
    assert f"foreground           IoU {iou:.4f}" in r.stdout, r.stdout


def test_infer_writes_the_numpy_mask(byo, capsys):
    out = byo["dir"] / "infer"
    image = byo["root"] / "images" / "im1.png"
    r = edgeseg_here(capsys, "infer", byo["model"], image, "--out-dir", out)
    assert r.returncode == 0, r.stderr
    labels = np.asarray(Image.open(out / "im1_labels.png"))
    assert np.array_equal(labels, numpy_foreground(byo["model"], byo["images"][1]).astype(np.uint8))


def test_parity_of_binary_outputs(byo, capsys):
    r = edgeseg_here(capsys, "parity", byo["model"], byo["model"])
    assert r.returncode == 0 and "PASS" in r.stdout and "foreground agreement 100.000%" in r.stdout, r.stdout
    r = edgeseg_here(capsys, "parity", byo["model"], byo["model"], "--data", f"folder:{byo['root']}")
    assert r.returncode == 0 and "PASS" in r.stdout and "foreground IoU" in r.stdout, r.stdout
    other = write_foreign(byo["dir"] / "other.onnx", Net(seed=1), BINARY_SIDECAR)
    r = edgeseg_here(capsys, "parity", byo["model"], other, "--data", f"folder:{byo['root']}")
    assert r.returncode == 1 and "FAIL: " in r.stdout and "foreground agreement" in r.stdout, r.stdout
    assert "argmax" not in r.stdout


def test_minimal_sidecar(tmp_path):
    """``model`` + ``class_names`` only: the graph's one input and output are used whatever their names."""
    from edgeseg.runtime import labels_from_outputs, open_session, preprocess

    path = write_foreign(tmp_path / "m.onnx", Net(out_channels=3, sigmoid=False), {"model": "m", "class_names": ["a", "b", "c"]},
                         input_name="data", output_name="scores")
    session = open_session(path)
    image = np.random.default_rng(1).random((3, 32, 64)).astype(np.float32)
    x, size = preprocess(image, session.meta)
    labels = labels_from_outputs(session.run(x), session.meta, size)[0]
    mean, std = np.float32([0.485, 0.456, 0.406])[:, None, None], np.float32([0.229, 0.224, 0.225])[:, None, None]
    ref = ort.InferenceSession(str(path)).run(None, {"data": ((image - mean) / std)[None]})[0][0].argmax(0)
    assert np.array_equal(labels, ref)


@pytest.mark.parametrize("field, value", [
    ("channel_order", "RGBA"), ("pixel_scale", 0.5), ("pixel_scale", "1/256"), ("input_layout", "CHW"),
    ("input_size", [0, 32]), ("input_size", 32), ("resize_mode", "crop"), ("output_kind", "sigmoid"),
    ("threshold", 1.5), ("threshold", True), ("output_stride", 0), ("output_stride", 2.0)])
def test_sidecar_refuses_each_invalid_new_field(tmp_path, field, value):
    sidecar = tmp_path / "m.onnx.json"
    sidecar.write_text(json.dumps({**BINARY_SIDECAR, field: value}))
    with pytest.raises(OnnxFileError, match=f"'{field}'"):
        read_sidecar(sidecar)


def test_class_names_that_do_not_fit_the_output(byo, tmp_path, capsys):
    sidecar = tmp_path / "m.onnx.json"
    sidecar.write_text(json.dumps({**BINARY_SIDECAR, "class_names": ["bg", "a", "b"]}))
    with pytest.raises(OnnxFileError, match="'class_names'.*2 classes"):
        read_sidecar(sidecar)
    # softmax over one channel: refused from the graph's static channel dim, before anything runs
    path = tmp_path / "m.onnx"
    path.write_bytes(byo["model"].read_bytes())
    sidecar.write_text(json.dumps({"model": "m", "class_names": ["bg", "fg"]}))
    assert_user_error(edgeseg_here(capsys, "infer", path, byo["root"] / "images" / "im0.png", "--out-dir", tmp_path / "o"),
                   "'class_names'", "1")
    # a dynamic channel dim: refused at the first run
    from edgeseg.export.metadata import ModelMeta
    from edgeseg.runtime.prepost import model_scores

    with pytest.raises(OnnxFileError, match="'class_names'"):
        model_scores({"logits": np.zeros((1, 3, 4, 4), np.float32)}, ModelMeta(model="m", class_names=["a", "b"]))


def test_nhwc_layout(tmp_path):
    from edgeseg.runtime import labels_from_outputs, open_session, preprocess

    path = write_foreign(tmp_path / "m.onnx", Net(layout="NHWC"), {**BINARY_SIDECAR, "input_layout": "NHWC"})
    rgb = np.random.default_rng(2).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    session = open_session(path)
    x, size = preprocess(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0, session.meta)
    assert x.shape == (1, 32, 64, 3)
    labels = labels_from_outputs(session.run(x), session.meta, size)[0]
    ref = run_ort(path, ((rgb[..., ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5)[None].copy())[0, ..., 0] > 0.3
    assert np.array_equal(labels, ref)


@pytest.mark.parametrize("resize_mode", ["stretch", "letterbox"])
def test_fixed_input_size(tmp_path, resize_mode):
    """A 48×48 graph on a 32×40 image: resized in (torch's bilinear here as the independent oracle), mapped back."""
    from edgeseg.runtime import open_session, preprocess
    from edgeseg.runtime.prepost import model_scores, scores_at_image

    path = write_foreign(tmp_path / "m.onnx", Net(), {**BINARY_SIDECAR, "input_size": [48, 48], "resize_mode": resize_mode},
                         sample_hw=(48, 48), dynamic=False)
    image = np.random.default_rng(3).random((3, 32, 40)).astype(np.float32)
    session = open_session(path)
    x, size = preprocess(image, session.meta)
    got = scores_at_image(model_scores(session.run(x), session.meta), session.meta, size)

    def resize(a, hw):
        return F.interpolate(torch.from_numpy(a), size=hw, mode="bilinear", align_corners=False).numpy()

    content = (48, 48) if resize_mode == "stretch" else (38, 48)  # 32×40 scaled by min(48/32, 48/40) = 1.2
    inp = (resize(image[None], content)[:, ::-1] - 0.5) / 0.5
    inp = np.pad(inp, ((0, 0), (0, 0), (0, 48 - content[0]), (0, 48 - content[1])))
    ref = resize(run_ort(path, np.ascontiguousarray(inp, np.float32))[:, :, : content[0], : content[1]].copy(), (32, 40))
    assert got.shape == (1, 1, 32, 40) and np.allclose(got, ref, atol=1e-5)


def test_output_stride(tmp_path):
    from edgeseg.runtime import open_session, preprocess
    from edgeseg.runtime.prepost import model_scores, scores_at_image

    path = write_foreign(tmp_path / "m.onnx", Net(stride=2), {**BINARY_SIDECAR, "output_stride": 2})
    image = np.random.default_rng(4).random((3, 32, 64)).astype(np.float32)
    session = open_session(path)
    x, size = preprocess(image, session.meta)
    out = session.run(x)
    assert out["prob"].shape == (1, 1, 16, 32)
    got = scores_at_image(model_scores(out, session.meta), session.meta, size)
    ref = F.interpolate(torch.from_numpy(out["prob"]), size=(32, 64), mode="bilinear", align_corners=False).numpy()
    assert np.allclose(got, ref, atol=1e-6)
    session.meta.output_stride = 1
    with pytest.raises(OnnxFileError, match="'output_stride'"):
        scores_at_image(model_scores(out, session.meta), session.meta, size)


def test_export_with_a_six_channel_sample(tmp_path):
    import edgeseg
    from edgeseg.export.metadata import load_onnx, read_metadata

    net = nn.Sequential(nn.Conv2d(6, 2, 3, padding=1))
    report = edgeseg.export_onnx(net, tmp_path / "six.onnx", sample=torch.randn(1, 6, 32, 32), exporter="legacy")
    assert report.passed, report.summary()
    meta = read_metadata(load_onnx(tmp_path / "six.onnx"), tmp_path / "six.onnx")
    assert meta.in_channels == 6 and len(meta.mean) == 6 and len(meta.std) == 6


def test_calibration_refuses_the_scored_images_unless_asked(byo, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    path.write_bytes(byo["model"].read_bytes())
    (tmp_path / "m.onnx.json").write_text(json.dumps({**BINARY_SIDECAR, "config": {"dataset": f"folder:{byo['root']}"}}))
    # the folder the model file names is not read at all: only built-in sets are taken from a file
    assert_user_error(edgeseg_here(capsys, "quantize", path, "--out", tmp_path / "q.onnx"), "not built in", "--calib-data")
    assert not (tmp_path / "q.onnx").exists()


def test_multilabel_decision():
    """Each channel thresholded; a pixel takes its most probable channel above the threshold, else background."""
    from edgeseg.export.metadata import ModelMeta
    from edgeseg.runtime.prepost import decide

    meta = ModelMeta(model="m", class_names=["bg", "a", "b"], output_kind="sigmoid_multilabel", threshold=0.5)
    assert meta.output_channels == 2
    scores = np.array([[0.2, 0.7, 0.6, 0.9], [0.1, 0.9, 0.3, 0.95]], np.float32).reshape(1, 2, 1, 4)
    assert decide(scores, meta).tolist() == [[[0, 2, 1, 2]]]


def test_pixel_scale_one_takes_0_to_255():
    from edgeseg.export.metadata import ModelMeta
    from edgeseg.runtime import preprocess

    image = np.random.default_rng(5).integers(0, 256, (3, 32, 32)).astype(np.float32) / 255.0
    raw = ModelMeta.validated({**BINARY_SIDECAR, "pixel_scale": 1, "mean": [127.5] * 3, "std": [127.5] * 3}, "test")
    unit = ModelMeta.validated({**BINARY_SIDECAR, "pixel_scale": 0.0039216}, "test")  # rounded 1/255 is 1/255
    # the README's spelling, "1/255" (and "1"), as a string in a JSON sidecar
    assert ModelMeta.validated({**BINARY_SIDECAR, "pixel_scale": "1/255"}, "test").pixel_scale == unit.pixel_scale
    assert ModelMeta.validated({**BINARY_SIDECAR, "pixel_scale": "1", "mean": [127.5] * 3, "std": [127.5] * 3},
                               "test").pixel_scale == 1.0
    assert np.allclose(preprocess(image, raw)[0], preprocess(image, unit)[0], atol=1e-6)
    assert np.allclose(preprocess(image, unit)[0][0], (image[::-1] - 0.5) / 0.5)


def test_eval_header_of_an_unsplit_folder_names_no_missing_split(byo, capsys):
    r = edgeseg_here(capsys, "eval", byo["model"], "--data", f"folder:{byo['root']}")
    assert r.returncode == 0, r.stderr
    assert f"{byo['root']}/val" not in r.stdout and "(no val/ split: all its images)" in r.stdout, r.stdout


def test_parity_without_data_says_it_compares_random_inputs(byo, capsys):
    r = edgeseg_here(capsys, "parity", byo["model"], byo["model"])
    assert r.returncode == 0 and "no --data: comparing on random inputs" in r.stdout and "--data" in r.stdout, r.stdout


def test_parity_delta_reads_as_its_arrow():
    from edgeseg.parity import ParityReport

    text = ParityReport("int8", miou_reference=0.1429, miou_candidate=0.1512).summary()
    assert "0.1429 -> 0.1512 (Δ +0.83 pts)" in text, text
    text = ParityReport("int8", kind="labels", miou_reference=0.5, miou_candidate=0.49, pixels=1).summary()
    assert "(Δ -1.00 pts)" in text, text


def test_fp16_sigmoid_parity_is_judged_by_decisions_not_one_pixels_error():
    """One pixel's probability off by 0.147 on the same side of the threshold: the decisions all agree, so FP16 passes
    and max|Δ| is reported; FP32 keeps bounding it (an FP32 error is an export bug)."""
    from edgeseg.export.metadata import ModelMeta
    from edgeseg.parity import compare

    meta = ModelMeta.validated({**BINARY_SIDECAR, "size_divisor": 1}, "test")
    probs = np.random.default_rng(0).uniform(0.5, 0.9, (1, 1, 16, 16)).astype(np.float32)
    off = probs.copy()
    off[0, 0, 3, 4] += 0.147  # still above 0.3

    class Fixed:
        backend = "onnxruntime"

        def __init__(self, out, precision):
            self.out, self.precision, self.meta = out, precision, meta

        def run(self, batch):
            return {"logits": self.out}

    batches = [(np.zeros((1, 3, 16, 16), np.float32), None)]
    fp16 = compare(Fixed(probs, "fp32"), Fixed(off, "fp16"), batches)
    assert fp16.passed and fp16.foreground_agreement == 1.0, fp16.summary()
    assert "max|Δ| 0.147" in fp16.summary()
    assert not compare(Fixed(probs, "fp32"), Fixed(off, "fp32"), batches).passed
