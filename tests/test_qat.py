"""QAT (edgeseg.quant.qat, edgeseg.train.train_qat): a fine-tune with fake quantization beats post-training quantization
at the same bit budget, and its export is explicit INT8 that TensorRT's parser takes and ONNX Runtime runs (< 60 s)."""
import copy

import numpy as np
import onnx
import pytest
import torch

from edgeseg.data import get_dataset
from edgeseg.errors import EdgeSegError
from edgeseg.evaluate import calibration_batches
from edgeseg.export.check import check_model
from edgeseg.export.metadata import read_metadata
from edgeseg.metrics.semantic import ConfusionMatrix
from edgeseg.models.checkpoint import load_checkpoint, read_checkpoint
from edgeseg.quant.qat import calibrate, prepare_qat, quantized_layers, strip_qat
from edgeseg.runtime import meta_from_checkpoint_dict, open_session
from edgeseg.runtime.prepost import model_input
from edgeseg.train import TrainConfig, train, train_qat

DATA = {"num_images": 16, "size": [64, 64], "num_classes": 3}
QUIET = dict(progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny U-Net trained 60 steps on synthetic scenes (mIoU ~0.92): the checkpoint, model and metadata."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same numbers on any machine: a 2-bit model's mIoU is sensitive to summation order
    d = tmp_path_factory.mktemp("qat")
    cfg = TrainConfig(model="unet_padded", dataset="synthetic", dataset_args=DATA, model_args={"base_width": 8, "depth": 2},
                      iterations=60, batch_size=4, crop=64, lr=5e-3)
    train(cfg, d / "base.pt", **QUIET)
    model, payload = load_checkpoint(d / "base.pt")
    yield d, model, payload, meta_from_checkpoint_dict(payload["config"], payload["meta"])
    torch.set_num_threads(threads)


def _miou(model, meta) -> float:
    val = get_dataset("synthetic", "val", **DATA)
    cm = ConfusionMatrix(meta.num_classes)
    model.eval()
    with torch.no_grad():
        for i in range(len(val)):
            image, mask = val.raw(i)
            cm.update(model(torch.from_numpy(model_input(image, meta)))["logits"].argmax(1)[0].numpy(), mask)
    return cm.scores().miou


def test_qat_beats_ptq_at_the_same_bit_budget(base):
    """At 2 bits PTQ loses half the mIoU; 30 QAT steps win much of it back. The control, a float fine-tune of the same
    30 steps then PTQ, shows the gain is the fake quantization's, not the extra steps'."""
    d, model, payload, meta = base
    calibration = calibration_batches(meta, "synthetic", None, 8)
    fp32 = _miou(model, meta)
    ptq = _miou(calibrate(prepare_qat(copy.deepcopy(model), bits=2), calibration), meta)
    qat, state = train_qat(d / "base.pt", d / "qat2.pt", iterations=30, bits=2, calib_images=8, **QUIET)
    assert state["iteration"] == 30
    qat_miou = _miou(qat, meta)
    tuned = TrainConfig(model="unet_padded", dataset="synthetic", dataset_args=DATA, model_args={"base_width": 8, "depth": 2},
                        iterations=30, batch_size=4, crop=64, lr=5e-4)  # train_qat's rate: a tenth of the source's
    float_tuned, _ = train(tuned, d / "ft.pt", prepare=lambda m: (m.load_state_dict(payload["state_dict"]), m)[1], **QUIET)
    control = _miou(calibrate(prepare_qat(copy.deepcopy(float_tuned), bits=2), calibration), meta)
    assert fp32 > 0.85 and ptq < fp32 - 0.2, (fp32, ptq)  # a setting where PTQ visibly hurts
    assert qat_miou > max(ptq, control) + 0.08, (fp32, ptq, control, qat_miou)


def test_strip_keeps_the_trained_weights_and_leaves_the_qat_model_quantized(base):
    _, model, _, meta = base
    x = torch.from_numpy(calibration_batches(meta, "synthetic", None, 1)[0])
    qat = calibrate(prepare_qat(copy.deepcopy(model), bits=4), [x.numpy()])
    assert len(quantized_layers(qat)) == sum(isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d) for m in model.modules())
    plain = strip_qat(qat)
    with torch.no_grad():
        float_out, plain_out, qat_out = (m.eval()(x)["logits"] for m in (model, plain, qat))
    assert set(plain.state_dict()) == set(model.state_dict()) and not quantized_layers(plain)
    torch.testing.assert_close(plain_out, float_out)
    assert (qat_out - float_out).abs().max() > 1e-3  # the stripped copy's hooks were its own: qat still fake-quantizes
    with pytest.raises(EdgeSegError, match="already prepared"):
        prepare_qat(qat)
    with pytest.raises(EdgeSegError, match="2 to 8 bits"):
        prepare_qat(copy.deepcopy(model), bits=16)


def test_qat_export_is_explicit_int8_tensorrt_takes_and_onnxruntime_runs(base):
    pytest.importorskip("modelopt.onnx.quantization", reason="the QAT export places Q/DQ with nvidia-modelopt (scripts/setup.sh)")
    d, _, _, meta = base
    out = d / "qat.onnx"
    train_qat(d / "base.pt", d / "qat8.pt", iterations=10, calib_images=4, onnx_out=out, **QUIET)
    proto = onnx.load(str(out))
    written = read_metadata(proto, out)
    assert written.precision == "int8" and written.config["qat"] is True and written.config["placement"] == "tensorrt"
    assert sum(n.op_type == "DequantizeLinear" for n in proto.graph.node) >= 8
    for target in ("tensorrt", "jetson"):
        report = check_model(proto, target)
        assert report.passed, "\n".join(map(str, report.problems))
    batch = calibration_batches(meta, "synthetic", None, 1)[0]
    logits = open_session(out).run(batch)["logits"]
    assert logits.shape == (1, 3, 64, 64) and np.isfinite(logits).all()
    # the checkpoint is the plain model's (every verb reads it) and says how it was tuned
    model, payload = load_checkpoint(d / "qat8.pt")
    assert not quantized_layers(model) and read_checkpoint(d / "qat8.pt")["train_config"]["qat"] is True


def test_int8_routes_make_every_route_or_say_why(base):
    """``edgeseg.bench.variants.int8_routes`` (quant_bench's variants): PTQ for ONNX Runtime and with TensorRT's
    placement, mixed precision and QAT each give a runnable file and a row with its pre-write check, QAT its float
    twin; a graph that fails its check is kept under its FAILED-CHECK name."""
    from edgeseg.bench.variants import int8_routes
    from edgeseg.export import export_onnx
    from edgeseg.parity import dataset_batches

    d, model, payload, meta = base
    fp32 = d / "routes" / "fp32.onnx"
    fp32.parent.mkdir()
    calibration = calibration_batches(meta, "synthetic", None, 2)
    check = list(dataset_batches(get_dataset("synthetic", "val", **DATA), meta, 2))
    export_onnx(model.eval(), fp32, meta=meta, sample=torch.as_tensor(calibration[0][:1]))
    files, rows = int8_routes(d / "base.pt", fp32, meta, calibration, check, max_drop=0.5, qat_iterations=2)
    assert list(rows) == ["FP32", "PTQ (ORT, 7-bit)", "PTQ TensorRT placement", "mixed (max drop 0.5)",
                          "QAT 2 steps + TensorRT placement", "FP32 of the QAT weights"]
    assert all("error" not in r for r in rows.values()), rows
    for name, row in rows.items():
        assert row["check"] in ("passed", "FAILED", "–") and files[name].is_file(), (name, row)
        assert files[name].name.endswith(".FAILED-CHECK.onnx") == (row["check"] == "FAILED")
        open_session(files[name]).run(check[0][0])
    assert "float:" in rows["mixed (max drop 0.5)"]["note"]
