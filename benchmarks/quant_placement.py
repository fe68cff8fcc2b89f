"""Today's INT8 quantizer (ONNX Runtime's, 7-bit and 8-bit weights) vs the TensorRT placement (NVIDIA ModelOpt) vs QAT
exported with that placement, on one small U-Net trained here on synthetic scenes: mIoU and ONNX Runtime latency,
timed side by side (edgeseg.bench). Writes benchmarks/results/quant_placement_cpu.{json,md}.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/quant_placement.py [--iterations 150] [--side 256]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from edgeseg.bench.timing import set_timing_environment

set_timing_environment()

import torch  # noqa: E402

from edgeseg.bench.report import load_note, machine_line, table, write_json_markdown  # noqa: E402
from edgeseg.bench.timing import loadavg, machine, summarize, time_round_robin  # noqa: E402
from edgeseg.data import get_dataset  # noqa: E402
from edgeseg.evaluate import calibration_batches, evaluate  # noqa: E402
from edgeseg.export import export_onnx  # noqa: E402
from edgeseg.models.checkpoint import load_checkpoint  # noqa: E402
from edgeseg.quant import quantize_int8  # noqa: E402
from edgeseg.quant.tensorrt import modelopt_version  # noqa: E402
from edgeseg.runtime import meta_from_checkpoint_dict, open_session  # noqa: E402
from edgeseg.train import TrainConfig, train, train_qat  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--qat-iterations", type=int, default=60)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="benchmarks/results")
    a = p.parse_args()
    data = {"num_images": 32, "size": [128, 128], "num_classes": 4}
    before = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = TrainConfig(model="unet_padded", dataset="synthetic", dataset_args=data,
                          model_args={"base_width": 16, "depth": 3}, iterations=a.iterations, batch_size=4, crop=128)
        train(cfg, d / "base.pt", progress=False)
        model, payload = load_checkpoint(d / "base.pt")
        meta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
        export_onnx(model, d / "fp32.onnx", meta=meta, sample=torch.randn(1, 3, 128, 128))
        calib = calibration_batches(meta, "synthetic", None, 16)
        files = {"FP32": d / "fp32.onnx", "PTQ ORT 7-bit (today's default)": d / "ort7.onnx",
                 "PTQ ORT 8-bit (today's --target tensorrt)": d / "ort8.onnx",
                 "PTQ TensorRT placement (ModelOpt)": d / "trt.onnx", f"QAT {a.qat_iterations} steps + placement": d / "qat.onnx"}
        names = list(files)
        quantize_int8(files[names[0]], files[names[1]], calib)
        quantize_int8(files[names[0]], files[names[2]], calib, reduce_range=False)
        quantize_int8(files[names[0]], files[names[3]], calib, target="tensorrt")
        train_qat(d / "base.pt", d / "qat.pt", iterations=a.qat_iterations, calib_images=16, onnx_out=files[names[4]],
                  progress=False)
        val = get_dataset("synthetic", "val", **data)
        sessions = {k: open_session(v) for k, v in files.items()}
        scores = {k: evaluate(s, val, progress=False).miou for k, s in sessions.items()}
        batch = torch.randn(1, 3, a.side, a.side).numpy()
        times = summarize(time_round_robin(sessions, batch, warmup=3, repeats=a.repeats), base="FP32")
    after = loadavg()
    rows = [[k, f"{scores[k]:.4f}", f"{100 * (scores['FP32'] - scores[k]):+.2f}", f"{times[k]['median_ms']:.1f}",
             f"{times[k]['p90_ms']:.1f}", f"{times[k]['speedup']:.2f}"] for k in names]
    m = machine()
    report = {"model": "unet_padded (base_width 16, depth 3), 4 classes", "data": data, "train_iterations": a.iterations,
              "qat_iterations": a.qat_iterations, "side": a.side, "miou": scores, "timing": times, "machine": m,
              "loadavg": {"before": before, "after": after}, "modelopt": modelopt_version()}
    text = "\n".join([
        "# INT8 placement on the CPU: ONNX Runtime's quantizer vs TensorRT placement vs QAT", "",
        f"unet_padded (base width 16, depth 3) trained {a.iterations} steps on synthetic scenes (4 classes, 128²); "
        f"mIoU on the 32 validation scenes; ONNX Runtime CPU latency at 1×3×{a.side}×{a.side}, timed round-robin "
        f"({a.repeats} runs after 3 warm-ups). QAT: {a.qat_iterations} fine-tune steps with fake INT8 (torch.ao), "
        f"exported with the TensorRT placement (nvidia-modelopt {modelopt_version()}).", "",
        *table(["graph", "mIoU", "drop (pt)", "median ms", "p90 ms", "speed-up vs FP32"], rows), "",
        "The TensorRT placement is made for TensorRT's fusions, not for ONNX Runtime's CPU kernels: it quantizes "
        "layer inputs only (TensorRT fuses the output scale itself), so ONNX Runtime finds no DQ→Conv→Q unit to run "
        "as an INT8 convolution and runs dequantize + FP32 convolution, slower than FP32. Its latency here says "
        "nothing of TensorRT's; its mIoU is what TensorRT's INT8 would compute (up to rounding).", "",
        load_note([("whole run", before, after)]), "", machine_line(m) + ".", ""])
    print(text)
    write_json_markdown(report, a.out, "quant_placement_cpu", text)


if __name__ == "__main__":
    main()
