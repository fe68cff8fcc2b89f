"""LiTS mIoU of the real-time models after one and the same training budget (issue 21), U-Net as the reference.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/realtime_train.py [--models a,b] [--iterations 150] [--minutes 4]

Every model gets the quickstart's recipe (AdamW 3e-3, poly decay, 128² crops of the 96 training slices, batch 8,
mild scale jitter, seed 0) for the same number of steps, with its paper's losses (``edgeseg.train``: OHEM, auxiliary
heads); mIoU is over the 24 held-out slices, in PyTorch (``edgeseg.evaluate``). A thin driver over ``edgeseg.train``;
adds a "training" table to benchmarks/results/realtime_cpu.{json,md} after every model (realtime_bench.write).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, os.path.dirname(__file__))
from realtime_bench import load, write  # noqa: E402  (the report's one writer)

from edgeseg.bench import loadavg  # noqa: E402
from edgeseg.evaluate import dataset_for, evaluate  # noqa: E402
from edgeseg.models.checkpoint import read_checkpoint  # noqa: E402
from edgeseg.models.realtime import inference_parameters  # noqa: E402
from edgeseg.quickstart import QUICKSTART_CONFIG  # noqa: E402
from edgeseg.runtime import meta_from_checkpoint_dict, open_session  # noqa: E402
from edgeseg.train import train  # noqa: E402

MODELS = {"bisenetv2": {}, "pidnet_s": {}, "ppliteseg_t": {}, "ddrnet23_slim": {}, "lraspp_mobilenetv3": {},
          "unet_padded": {"base_width": 16}}  # U-Net as in the quickstart; the real-time models at their papers' widths


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--minutes", type=float, default=None, help="a cap per model as well (the row says if it stopped it)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args()
    out = Path(a.out)
    report = load(out)
    cfg0 = replace(QUICKSTART_CONFIG, iterations=a.iterations, minutes=a.minutes)
    report["training"] = {
        "budget": (f"Budget: {a.iterations} steps" + (f" (or {a.minutes:g} min, whichever comes first)" if a.minutes else "")
                   + f" of batch {cfg0.batch_size} ({cfg0.crop}² crops of the 96 training slices "
                   f"of the one LiTS volume), {cfg0.optimizer} lr {cfg0.lr} with poly decay, scale jitter {cfg0.scale}, seed "
                   f"{cfg0.seed}, each model's paper losses; val = the 24 held-out slices (3 classes), PyTorch FP32, "
                   "1-channel CT input (the models' first convolution takes 1 channel). Trained one after another on the "
                   "2-core machine while other jobs ran: the minutes are wall time under that load, the mIoU does not "
                   "depend on it."),
        "iterations": a.iterations, "rows": []}
    for name in a.models.split(","):
        cfg = replace(cfg0, model=name, model_args=MODELS.get(name, {}))
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / f"{name}.pt"
            model, state = train(cfg, ckpt, progress=False)
            payload = read_checkpoint(ckpt)
        meta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
        scores = evaluate(open_session(model, "torch", meta=meta), dataset_for(meta, "lits", "val"), progress=False)
        report["training"]["rows"].append({
            "model": name, "model_args": cfg.model_args, "params_m": inference_parameters(model) / 1e6,
            "iterations": state["iteration"], "minutes": state["elapsed"] / 60, "final_loss": state["losses"][-1],
            "miou": scores.miou, "per_class_iou": scores.per_class_iou, "loadavg": loadavg()})
        write(report, out)
        print(name, f"mIoU {scores.miou:.3f}", [round(v, 3) for v in scores.per_class_iou], flush=True)


if __name__ == "__main__":
    main()
