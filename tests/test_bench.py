import json

from edgeseg.bench import parse_variant, run_bench, write_report
from edgeseg.errors import EdgeSegError

import pytest


def test_bench_rows_ratios_and_report(tmp_path):
    report = run_bench(["fcn32s_resnet18"], size=(128, 128), num_classes=4, calib_images=2, warmup=1, repeats=3,
                       progress=False, log=lambda *_: None)
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    for r in rows.values():
        assert r["runs"] == 3 and 0 < r["latency_ms_median"] <= r["latency_ms_p90"]
        assert r["speedup_vs_torch"] == pytest.approx(rows[("torch", "fp32")]["latency_ms_median"] / r["latency_ms_median"])
        assert r["first_run_peak_mb"] is None or r["first_run_peak_mb"] >= 0
    assert rows[("onnxruntime", "int8")]["model_mb"] < 0.5 * rows[("onnxruntime", "fp32")]["model_mb"]
    assert rows[("onnxruntime", "fp32")]["agreement_vs_torch"] > 0.999
    assert report["machine"]["cores"] >= 1 and report["machine"]["onnxruntime"]
    paths = write_report(report, tmp_path, "b", "test")
    assert json.loads(paths[0].read_text())["rows"][0]["model"] == "fcn32s_resnet18"
    assert "| fcn32s_resnet18 | onnxruntime | int8 |" in paths[1].read_text()
    assert paths[2].read_bytes()[:4] == b"\x89PNG"


def test_variant_parsing():
    assert parse_variant("onnxruntime:int8") == ("onnxruntime", "int8")
    assert parse_variant("torch") == ("torch", "fp32")
    with pytest.raises(EdgeSegError):
        parse_variant("torch:int8")
    with pytest.raises(EdgeSegError):
        parse_variant("tvm:fp32")


def test_bench_trained_checkpoint_reports_miou(tmp_path):
    from edgeseg.bench import bench_checkpoints
    from edgeseg.train import TrainConfig, train

    cfg = TrainConfig(model="unet_padded", dataset="synthetic", model_args={"base_width": 4, "depth": 2},
                      dataset_args={"num_images": 8, "size": (64, 64)}, epochs=2, batch_size=4)
    train(cfg, tmp_path / "m.pt", progress=False, log=lambda *_: None)
    report = bench_checkpoints([tmp_path / "m.pt"], "synthetic", calib_images=2, warmup=1, repeats=2, progress=False,
                               log=lambda *_: None)
    assert report["size"] == [64, 64] and report["data"] == "synthetic"  # the data set as trained on
    mious = {(r["backend"], r["precision"]): r["miou"] for r in report["rows"]}
    assert all(0.0 <= v <= 1.0 for v in mious.values())
    assert abs(mious[("torch", "fp32")] - mious[("onnxruntime", "fp32")]) < 1e-3
