"""The quickstart's accuracy gate: the 16-channel U-Net trained for its fixed 300 steps (about 4 minutes
on 2 cores) must reach a liver IoU of at least 0.70 on the held-out LiTS slices, and INT8 must lose at
most 1 mIoU point against FP32."""
import json

import pytest

from edgeseg.quickstart import run_quickstart


@pytest.mark.slow
def test_quickstart_accuracy_and_int8_cost(tmp_path):
    report = run_quickstart(tmp_path, repeats=5, progress=False, log=lambda *_: None)
    assert report["training"]["iterations"] == 300
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    fp32, int8 = rows[("onnxruntime", "fp32")], rows[("onnxruntime", "int8")]
    assert report["liver_iou"] >= 0.70, f"liver IoU {report['liver_iou']:.4f}"
    assert fp32["miou"] - int8["miou"] <= 0.01, f"INT8 lost {100 * (fp32['miou'] - int8['miou']):.2f} mIoU points"
    assert abs(rows[("torch", "fp32")]["miou"] - fp32["miou"]) < 1e-3
    assert report["parity"]["fp32"]["passed"]
    for name in ("report.md", "report.json", "report.png"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "report.json").read_text())["validation"]["slices"] == [104, 128]
