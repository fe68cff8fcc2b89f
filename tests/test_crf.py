"""DeepLab's fully connected CRF (edgeseg.crf): the dense reference improves a noisy prediction, the exportable
mean-field layer equals its PyTorch implementation in ONNX Runtime (float contract, tensorrt flavour, deploy
graph), passes the TensorRT static check, and bad parameters are one line and exit 2."""
import numpy as np
import pytest
import torch

import edgeseg
from edgeseg.cli import main
from edgeseg.crf import CRFParams, dense_crf, has_dense_crf, mean_field_crf
from edgeseg.models import create
from edgeseg.tolerances import TOLERANCES

needs_dense = pytest.mark.skipif(not has_dense_crf(), reason="pydensecrf2 is not installed (pip install 'edgeseg[crf]')")
FAST = {"iterations": 3, "window": 5}  # the layer's graph grows with window² × iterations; the tests keep it small


def noisy_scene(seed=0, size=64):
    """A grey image with a bright disk (class 1) and a dark square (class 2) on mid grey, and logits that are
    right on average but flip many pixels: what a coarse network gives near boundaries and in flat regions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    gt = np.zeros((size, size), np.int64)
    gt[(yy - 22) ** 2 + (xx - 22) ** 2 < 12 ** 2] = 1
    gt[38:56, 36:58] = 2
    image = np.choose(gt, [0.5, 0.8, 0.2])[None] + rng.normal(0, 0.02, (1, size, size))
    logits = 2.0 * np.eye(3)[gt].transpose(2, 0, 1) + rng.normal(0, 1.3, (3, size, size))
    return image.clip(0, 1).astype(np.float32), logits.astype(np.float32), gt


def miou(labels, gt, k=3):
    return np.mean([((labels == c) & (gt == c)).sum() / ((labels == c) | (gt == c)).sum() for c in range(k)])


@needs_dense
def test_dense_crf_improves_iou_of_a_noisy_prediction():
    image, logits, gt = noisy_scene()
    before = miou(logits.argmax(0), gt)
    q = dense_crf(image, logits, CRFParams())
    assert q.shape == logits.shape and np.allclose(q.sum(0), 1, atol=1e-3)
    after = miou(q.argmax(0), gt)
    assert before < 0.8 and after > before + 0.1, (before, after)


def test_local_layer_improves_iou_and_tracks_the_dense_crf():
    image, logits, gt = noisy_scene(seed=1)
    layer = mean_field_crf(CRFParams(), [0.5], [0.25])
    with torch.no_grad():
        refined = layer(torch.from_numpy((image - 0.5) / 0.25)[None], torch.from_numpy(logits)[None])[0].numpy()
    before, after = miou(logits.argmax(0), gt), miou(refined.argmax(0), gt)
    assert after > before + 0.1, (before, after)
    if has_dense_crf():
        agreement = (refined.argmax(0) == dense_crf(image, logits).argmax(0)).mean()
        assert agreement > 0.9, agreement


@pytest.fixture(scope="module")
def crf_graphs(tmp_path_factory):
    d = tmp_path_factory.mktemp("crf")
    torch.manual_seed(0)
    model = create("unet_padded", num_classes=3, in_channels=1, base_width=4, depth=2).eval()
    # edgeseg.export_onnx checks each graph against PyTorch (the model with the layer) at two sizes before writing
    tensors = edgeseg.export_onnx(model, d / "crf.onnx", crf=FAST)
    frames = edgeseg.export_onnx(model, d / "crf_frames.onnx", crf=FAST, flavour="tensorrt", io="frames")
    return d, model, tensors, frames


def test_exported_layer_equals_pytorch_in_onnxruntime_at_two_sizes(crf_graphs):
    import onnxruntime as ort

    from edgeseg.crf import with_crf

    d, model, tensors, frames = crf_graphs
    assert tensors.passed and frames.passed
    meta = tensors.meta
    assert meta.output_stride == 1 and meta.config["crf"] == {**CRFParams().__dict__, **FAST}
    wrapped, _ = with_crf(model, meta, FAST)
    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(str(d / "crf.onnx"), so, providers=["CPUExecutionProvider"])
    tol = TOLERANCES[("fp32", "logits")]
    for h, w in ((64, 64), (80, 112)):
        x = torch.randn(1, 1, h, w)
        with torch.no_grad():
            ref = wrapped(x)["logits"].numpy()
            plain = model(x)["logits"].numpy()
        out = s.run(None, {meta.input_name: x.numpy()})[0]
        assert np.isfinite(out).all() and out.shape == ref.shape == (1, 3, h, w)
        assert np.abs(out - ref).max() <= tol.atol + tol.rtol * np.abs(ref).max()
        assert np.abs(ref - plain).max() > 0.1  # the layer did refine


def test_crf_graphs_pass_the_tensorrt_static_check(crf_graphs):
    check = pytest.importorskip("edgeseg.export.check", reason="edgeseg check (issue 23) is not in this tree")
    d = crf_graphs[0]
    for name in ("crf.onnx", "crf_frames.onnx"):
        report = check.check_model(d / name, "tensorrt")
        assert report.passed, (name, report.problems)
        report = check.check_model(d / name, "jetson")
        assert report.passed, (name, report.problems)


def test_deploy_graph_with_crf_runs_and_eval_refuses_host_crf_on_it(crf_graphs, capsys):
    from edgeseg.runtime import open_session, predict

    d = crf_graphs[0]
    s = open_session(d / "crf_frames.onnx")
    frame = np.random.default_rng(0).integers(0, 256, (70, 90, 1), dtype=np.uint8)
    assert predict(s, frame)["labels"].shape == (70, 90)
    assert main(["eval", str(d / "crf_frames.onnx"), "--crf", "--limit", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deploy graph" in err[0] and " -- " in err[0]


@pytest.mark.parametrize("argv, word", [
    (["eval", "m.onnx", "--crf", "--crf-theta-alpha", "-1"], "theta_alpha"),
    (["eval", "m.onnx", "--crf", "--crf-theta-gamma", "0"], "theta_gamma"),
    (["eval", "m.onnx", "--crf", "--crf-iterations", "0"], "iterations"),
    (["eval", "m.onnx", "--crf-search", "--crf-w-appearance", "nan"], "w_appearance"),
    (["infer", "m.onnx", "a.png", "--crf", "--crf-theta-beta", "nan"], "theta_beta"),
    (["infer", "m.onnx", "a.png", "--crf", "--crf-w-smoothness", "inf"], "w_smoothness"),
    (["export", "unet_padded", "--crf", "--crf-window", "4"], "window"),
    (["export", "unet_padded", "--crf", "--crf-theta-beta", "-5"], "theta_beta"),
])
def test_bad_crf_parameters_are_one_line_and_exit_2(argv, word, capsys):
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and word in err[0] and " -- " in err[0] and "Traceback" not in err[0], err


def test_api_refuses_bad_crf_values():
    from edgeseg.crf import crf_params
    from edgeseg.errors import EdgeSegError

    for bad in ({"window": 9.5}, {"iterations": True}, {"theta_alpha": float("nan")}, {"sigma": 3}):
        with pytest.raises(EdgeSegError):
            crf_params(bad)


@needs_dense
def test_eval_crf_and_crf_search_on_lits(crf_graphs, tmp_path, capsys):
    pytest.importorskip("mrcfile")
    model = crf_graphs[1]
    edgeseg.export_onnx(model, tmp_path / "m.onnx", exporter="legacy")
    assert main(["eval", str(tmp_path / "m.onnx"), "--data", "lits", "--limit", "2", "--crf", "--crf-iterations", "3"]) == 0
    out = capsys.readouterr().out
    assert "dense CRF: w1 4, θα 121, θβ 5, w2 3, θγ 3, 3 iterations" in out and "mIoU" in out
    assert main(["eval", str(tmp_path / "m.onnx"), "--data", "lits", "--limit", "2", "--crf-search",
                 "--crf-iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "grid search (27 settings)" in out and "best:" in out and "no CRF" in out


class NoisyScenes:
    """``noisy_scene``s as a data set (``raw(i)``: image, ground truth), the way edgeseg's evaluation reads one."""
    info = type("Info", (), {"name": "noisy scenes", "in_channels": 1})

    def __init__(self, seeds):
        self.items = [noisy_scene(seed)[::2] for seed in seeds]

    def __len__(self):
        return len(self.items)

    def raw(self, i):
        return self.items[i]


@needs_dense
def test_compare_scores_each_way_as_evaluate_does(crf_graphs, tmp_path):
    from edgeseg.crf import compare, crf_labels
    from edgeseg.evaluate import evaluate
    from edgeseg.metrics import boundary_band
    from edgeseg.runtime import open_session, predict

    d, model = crf_graphs[:2]
    edgeseg.export_onnx(model, tmp_path / "plain.onnx")
    plain, local, data = open_session(tmp_path / "plain.onnx"), open_session(d / "crf.onnx"), NoisyScenes((2, 3))
    params = CRFParams(**FAST)  # the parameters crf.onnx was exported with
    result = compare(plain, local, data, params, band=2)
    # mIoU over whole masks: what edgeseg eval gives without the CRF, with the dense CRF, and for the CRF graph
    assert result["miou"] == pytest.approx({"none": evaluate(plain, data, progress=False).miou,
                                            "dense": evaluate(plain, data, progress=False, crf=params).miou,
                                            "local": evaluate(local, data, progress=False).miou})
    agree = [(predict(local, image)["labels"] == crf_labels(plain, image, params)).mean() for image, _ in data.items]
    assert result["local_vs_dense_label_agreement"] == pytest.approx(np.mean(agree))  # equal image sizes
    assert all(len(v) == 3 for v in result["per_class_iou"].values()) and set(result["boundary_miou"]) == set(result["miou"])
    # boundary mIoU: edgeseg eval's mIoU on masks whose pixels farther than 2 px from a class edge are ignored
    near = NoisyScenes(())
    near.items = [(image, np.where(boundary_band(gt, 2), gt, plain.meta.ignore_index)) for image, gt in data.items]
    assert result["boundary_miou"]["local"] == pytest.approx(evaluate(local, near, progress=False).miou)
    assert result["boundary_miou"]["none"] == pytest.approx(evaluate(plain, near, progress=False).miou)
