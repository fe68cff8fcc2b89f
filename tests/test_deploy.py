"""Deploy graphs (``io="frames"``): uint8 frames of any size in, decisions out, held against the float pipeline on
the same frames by the deploy rows of the tolerance table, one model of each task in both flavours. Each graph is
exported once per module (``edgeseg.export_onnx``'s own check is the float-pipeline parity at two odd sizes)."""
import numpy as np
import pytest
import torch

import edgeseg
from edgeseg.errors import InputError
from edgeseg.export.check import check_model
from edgeseg.export.deploy import float_twin
from edgeseg.models import create
from edgeseg.ops.native import plugin_dir
from edgeseg.parity import compare, random_batches
from edgeseg.runtime import open_session, predict
from edgeseg.runtime.prepost import instance_map, to_frame

ODD = [(479, 641), (97, 131)]


def _needs_plugins(flavour):
    if flavour == "tensorrt" and not (plugin_dir() / "libedgeseg_ort.so").is_file():
        pytest.skip("libedgeseg_ort.so not built (scripts/build_plugins.sh could not fetch ONNX Runtime's headers)")


def _export(model, tmp_path_factory, flavour, sample, **kw):
    _needs_plugins(flavour)
    folder = tmp_path_factory.mktemp(f"deploy_{getattr(model, 'task', 'semantic')}_{flavour}")
    report = edgeseg.export_onnx(model, folder / "frames.onnx", io="frames", flavour=flavour, sample=sample, **kw)
    print(report.summary())
    assert report.passed, report.summary()
    if flavour == "tensorrt":  # what TensorRT's parser would refuse, found here (edgeseg check)
        for target in ("tensorrt", "jetson"):
            problems = check_model(folder / "frames.onnx", target).problems
            assert not problems, "\n".join(map(str, problems))
    # the reference: the float pipeline in PyTorch (its ONNX export is held to PyTorch by the export tests)
    return report.meta, open_session(folder / "frames.onnx"), open_session(model, "torch", meta=float_twin(report.meta))


@pytest.fixture(scope="module", params=["portable", "tensorrt"])
def semantic(request, tmp_path_factory):
    torch.manual_seed(0)
    model = create("unet_padded", num_classes=4, base_width=4).eval()
    return _export(model, tmp_path_factory, request.param, torch.randn(1, 3, 128, 128))


def test_semantic_deploy_graph_labels_match_the_float_pipeline(semantic):
    meta, frames, floats = semantic
    assert meta.io == "frames" and list(meta.outputs) == ["labels"]
    assert frames.session.get_inputs()[0].type == "tensor(uint8)"
    report = compare(floats, frames, random_batches(meta, ODD, seed=3), "fp32")
    print(report.summary())
    assert report.passed and report.kind == "labels" and report.pixels == sum(h * w for h, w in ODD)
    out = frames.run(np.zeros((2, *ODD[1], 3), np.uint8))  # batched, odd-sized
    assert out["labels"].shape == (2, *ODD[1]) and out["labels"].dtype == np.uint8


def test_semantic_deploy_output_is_a_fraction_of_the_float_contract(semantic):
    meta, frames, floats = semantic
    frame = np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)
    float_bytes = sum(v.nbytes for v in floats.run(edgeseg.runtime.preprocess(frame.transpose(2, 0, 1) / 255.0, meta)[0]).values())
    deploy_bytes = sum(v.nbytes for v in frames.run(frame[None]).values())
    assert deploy_bytes * 4 * meta.num_classes <= float_bytes  # 1 byte a pixel against 4 per class


def test_bgr_frames_and_wrong_inputs(semantic, tmp_path):
    meta, rgb, _ = semantic
    if meta.flavour == "tensorrt":
        pytest.skip("the channel order does not depend on the flavour")
    torch.manual_seed(0)
    model = create("unet_padded", num_classes=4, base_width=4).eval()
    report = edgeseg.export_onnx(model, tmp_path / "bgr.onnx", io="frames", frame_order="BGR")
    assert report.passed and report.meta.frame_order == "BGR"
    bgr = open_session(tmp_path / "bgr.onnx")
    frame = np.random.default_rng(1).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    assert (predict(bgr, frame[..., ::-1].copy())["labels"] == predict(rgb, frame)["labels"]).all()
    image = frame.transpose(2, 0, 1) / 255.0  # a float image is converted to the graph's frame order
    assert (predict(bgr, image)["labels"] == predict(rgb, frame)["labels"]).all()
    with pytest.raises(InputError, match="uint8"):
        rgb.run(np.zeros((1, 32, 32, 3), np.float32))
    with pytest.raises(InputError, match="N×H×W×3"):
        rgb.run(np.zeros((1, 3, 32, 32), np.uint8))


@pytest.fixture(scope="module", params=["portable", "tensorrt"])
def instance(request, tmp_path_factory):
    from test_instance import small, spread_scores

    model = small()
    spread_scores(model.net, seed=1)
    return _export(model.eval(), tmp_path_factory, request.param, torch.randn(1, 3, 128, 128))


def test_instance_deploy_graph_matches_every_detection_and_decodes_to_the_float_masks(instance):
    meta, frames, floats = instance
    assert list(meta.outputs) == ["boxes", "scores", "labels", "num_detections", "instance_map", "mask_probs"]
    report = compare(floats, frames, random_batches(meta, ODD[1:], seed=4), "fp32")
    print(report.summary())
    assert report.passed and report.detections > 0 and report.matched == report.detections
    found = 0
    for seed in range(3):
        frame = np.random.default_rng(seed).integers(0, 256, (*ODD[1], 3), dtype=np.uint8)
        ours, theirs = predict(frames, frame, masks=True), predict(floats, frame, masks=True)
        found += len(theirs["boxes"])
        assert ours["instance_map"].shape == ODD[1] and ours["instance_map"].dtype == np.uint8
        # the compact outputs decode to what the float contract gives: the map exactly, the pasted masks to rounding
        assert (ours["instance_map"] == instance_map(theirs["masks"], meta.max_detections)).all()
        assert np.abs(ours["masks"] - theirs["masks"]).max() < 1e-4
        assert np.allclose(ours["boxes"], theirs["boxes"], atol=1e-3)
    assert found > 0
    out = frames.run(frame[None])
    d = meta.max_detections  # a byte a pixel plus D mask-head masks, instead of D float masks at frame size
    assert out["instance_map"].shape == (1, *ODD[1]) and out["mask_probs"].shape == (1, d, 28, 28)


@pytest.fixture(scope="module", params=["portable", "tensorrt"])
def panoptic(request, tmp_path_factory):
    from test_panoptic_fpn import small

    return _export(small(), tmp_path_factory, request.param, torch.randn(1, 3, 128, 128))


def test_panoptic_deploy_graph_gives_the_float_pipelines_segments(panoptic):
    meta, frames, floats = panoptic
    assert list(meta.outputs) == ["panoptic", "segments", "semantic"]
    report = compare(floats, frames, random_batches(meta, ODD[1:], seed=5), "fp32")
    print(report.summary())
    assert report.passed and report.id_agreement >= 0.999 and report.pq_vs_reference is not None
    frame = np.random.default_rng(6).integers(0, 256, (*ODD[1], 3), dtype=np.uint8)
    ours, theirs = predict(frames, frame), predict(floats, frame)
    assert ours["panoptic"].dtype == np.uint8 and ours["semantic"].shape == ODD[1]
    assert (ours["semantic"] == theirs["semantic"]).mean() >= 0.999
    assert (ours["segments"][:, 2] == 1).any()  # thing segments were pasted, not only stuff


def test_deploy_graph_through_eval_and_parity_verbs(semantic, tmp_path):
    from edgeseg.evaluate import evaluate
    from edgeseg.data import get_dataset

    meta, frames, floats = semantic
    if meta.flavour == "tensorrt":
        pytest.skip("the verbs do not depend on the flavour")
    ds = get_dataset("synthetic", "val")
    if ds.info.in_channels != 3:
        pytest.skip("the synthetic set is not RGB")
    a, b = evaluate(frames, ds, limit=2, progress=False), evaluate(floats, ds, limit=2, progress=False)
    # the deploy graph sees the images as 8-bit frames: the same decisions up to that rounding
    assert abs(a.miou - b.miou) < 0.02
    x = to_frame(ds.raw(0)[0])
    assert predict(frames, x)["labels"].shape == x.shape[:2]


def test_deploy_graph_through_bench(semantic):
    """``edgeseg bench`` on a deploy graph: timed on uint8 frames, scored and checked through ``predict``."""
    from edgeseg.bench import bench_files

    meta, frames, _ = semantic
    if meta.flavour == "tensorrt":
        pytest.skip("the bench does not depend on the flavour")
    report = bench_files([frames.path], "synthetic", variants=("onnxruntime:fp32",), repeats=2, warmup=1, examples=1,
                         check_images=1, progress=False, log=lambda *_: None)
    row = report["rows"][0]
    assert row["backend"] == "onnxruntime" and row["accuracy_metric"] == "mIoU" and row["latency_ms_median"] > 0
    assert row["accuracy"] is not None and 0 <= row["accuracy"] <= 1
