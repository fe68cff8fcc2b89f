"""The main job, end to end on the embedded default (ONNX Runtime on the CPU): train a U-Net on the
real LiTS CT slices, export it, quantize it to INT8, then evaluate and time PyTorch FP32, ONNX
Runtime FP32 and ONNX Runtime INT8 side by side, and write report.md / report.json / report.png."""
from __future__ import annotations

import json
from pathlib import Path

from edgeseg.bench import bench_model, machine, markdown, write_report
from edgeseg.evaluate import dataset_for
from edgeseg.export.metadata import ModelMeta
from edgeseg.parity import compare, dataset_batches
from edgeseg.runtime import meta_from_checkpoint_dict, open_session
from edgeseg.train import TrainConfig, train

# A fixed number of steps (about 4 minutes on 2 cores), so the accuracy is the same on any machine.
# Tried on this data (4-minute budgets, liver IoU on slices 104-127): crop 128 + AdamW 3e-3 + mild
# scale jitter ≈ 0.72; adding sagittal/coronal slices 0.48, 3- or 5-slice context 0.73/0.67,
# soft Dice 0.71, batch 4 0.69-0.73, a narrower HU window 0.72.
QUICKSTART_CONFIG = TrainConfig(
    model="unet_padded", dataset="lits", model_args={"base_width": 16}, iterations=300, batch_size=8,
    optimizer="adamw", lr=3e-3, crop=128, scale=(0.9, 1.1), seed=0,
)


def run_quickstart(out_dir: str | Path = "runs/quickstart", iterations: int | None = None, minutes: float | None = None,
                   calib_images: int = 32, repeats: int = 20, progress: bool = True, log=print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "unet_lits.pt"
    cfg = TrainConfig(**{**QUICKSTART_CONFIG.__dict__, "iterations": iterations or QUICKSTART_CONFIG.iterations,
                         "minutes": minutes})
    budget = f"{cfg.iterations} steps" + (f" or {minutes:g} min" if minutes else "")
    log(f"[1/4] training a 16-channel U-Net on LiTS CT slices {val_range()} held out, for {budget}")
    model, state = train(cfg, ckpt, progress=progress, log=log)

    from edgeseg.models.checkpoint import read_checkpoint

    payload = read_checkpoint(ckpt)
    meta: ModelMeta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
    val = dataset_for(meta, "lits", "val")
    calib_ds = dataset_for(meta, "lits", "train")
    from edgeseg.runtime import preprocess

    step = max(1, len(calib_ds) // calib_images)
    calibration = [preprocess(calib_ds.raw(i)[0], meta)[0] for i in range(0, len(calib_ds), step)][:calib_images]
    log(f"[2/4] exporting to ONNX and quantizing to INT8 (MinMax, {len(calibration)} training slices)")
    log("[3/4] evaluating and timing PyTorch FP32 / ONNX Runtime FP32 / ONNX Runtime INT8 on the held-out slices")
    rows = bench_model(model, meta, ("torch:fp32", "onnxruntime:fp32", "onnxruntime:int8"), (128, 128), 1, out,
                       calibration, "minmax", dataset=val, warmup=3, repeats=repeats, progress=progress)
    torch_s = open_session(model, "torch", meta=meta)
    parity = {}
    for precision in ("fp32", "int8"):
        path = out / (f"{meta.model}.onnx" if precision == "fp32" else f"{meta.model}_int8.onnx")
        parity[precision] = compare(torch_s, open_session(path), dataset_batches(val, meta), precision).as_dict()
    from edgeseg.evaluate import evaluate

    scores = evaluate(open_session(out / f"{meta.model}.onnx"), val, progress=False)
    report = {"machine": machine(), "size": [128, 128], "batch": 1, "rows": rows,
              "training": {"minutes": state["elapsed"] / 60, "epochs": state["epoch"], "iterations": state["iteration"],
                           "final_loss": state["losses"][-1], "config": {k: v for k, v in cfg.__dict__.items()}},
              "validation": {"slices": list(val.info.notes["val_slices"]), "per_class_iou_onnxruntime_fp32":
                             dict(zip(meta.class_names, scores.per_class_iou)), "pixel_accuracy": scores.pixel_accuracy,
                             "mean_accuracy": scores.mean_accuracy, "fw_iou": scores.fw_iou},
              "parity": parity}
    log("[4/4] writing the report")
    paths = write_report(report, out, "report", "edgeseg quickstart: U-Net on LiTS, accuracy vs latency (CPU)")
    md = markdown(report, "edgeseg quickstart")
    extra = [
        "", f"Liver IoU (ONNX Runtime FP32, slices {val.info.notes['val_slices'][0]}–{val.info.notes['val_slices'][1] - 1}): "
        f"{scores.per_class_iou[1]:.4f}; tumour IoU {scores.per_class_iou[2]:.4f}; "
        f"trained {report['training']['minutes']:.1f} min ({state['epoch']} epochs).",
        f"Parity vs PyTorch — FP32: {compare_line(parity['fp32'])}; INT8: {compare_line(parity['int8'])}.",
    ]
    write_md = md + "\n".join(extra) + "\n"
    from edgeseg.io import write_text_atomic

    write_text_atomic(paths[1], write_md)
    log(write_md)
    log("wrote " + ", ".join(str(p) for p in paths))
    report["liver_iou"] = scores.per_class_iou[1]
    return report


def val_range() -> str:
    from edgeseg.data.lits import VAL_SLICES

    return f"{VAL_SLICES[0]}–{VAL_SLICES[1] - 1}"


def compare_line(p: dict) -> str:
    drop = p.get("miou_drop")
    return (f"argmax agreement {100 * p['argmax_agreement']:.2f}%, max|Δ| {p['max_abs']:.3g}"
            + ("" if drop is None else f", mIoU Δ {100 * drop:+.2f} pts") + (" PASS" if p["passed"] else " FAIL"))


def load_report(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "report.json").read_text())
