"""DeepLab's CRF on LiTS: no CRF vs the dense reference (pydensecrf2) vs the exportable local layer (ONNX Runtime).

Trains the quickstart's U-Net for ``--iterations`` steps (cheap: the CRF's gain is what is measured, not the net),
exports it twice (float contract, and with ``--crf``), then on the held-out LiTS slices reports mIoU, boundary IoU
(pixels within ``--band`` px of a ground-truth class edge), the local layer's label agreement with the dense CRF,
the dense CRF grid search of ``edgeseg eval --crf-search``, and ms per 512² image (each CRF alone, side by side).
Writes benchmarks/results/crf_cpu.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

import edgeseg  # noqa: E402
from edgeseg.crf import CRFParams, crf_labels, dense_crf, search, session_scores  # noqa: E402
from edgeseg.evaluate import dataset_for  # noqa: E402
from edgeseg.metrics import ConfusionMatrix  # noqa: E402
from edgeseg.models.checkpoint import load_checkpoint, read_checkpoint  # noqa: E402
from edgeseg.quickstart import QUICKSTART_CONFIG  # noqa: E402
from edgeseg.runtime import meta_from_checkpoint_dict, open_session, predict  # noqa: E402
from edgeseg.sysinfo import machine_info  # noqa: E402
from edgeseg.train import TrainConfig, train  # noqa: E402


def band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` px of a class edge of ``mask``."""
    edge = np.zeros(mask.shape, bool)
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[1:] |= mask[:-1] != mask[1:]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:, 1:] |= mask[:, :-1] != mask[:, 1:]
    return ndimage.binary_dilation(edge, iterations=width) if edge.any() else edge


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=150, help="training steps (the quickstart's recipe, fewer steps)")
    ap.add_argument("--out", default="runs/crf_lits")
    ap.add_argument("--model", default="unet_padded", help="a zoo model (the quickstart's recipe; unet_padded: its width)")
    ap.add_argument("--band", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    unet = a.model == "unet_padded"
    stem = "unet" if unet else a.model
    ckpt = out / f"{stem}_lits.pt"
    t0 = time.time()
    took = out / ("train_seconds.txt" if unet else f"{stem}_train_seconds.txt")
    if not ckpt.exists():
        cfg = TrainConfig(**{**QUICKSTART_CONFIG.__dict__, "iterations": a.iterations, "model": a.model,
                             "model_args": QUICKSTART_CONFIG.model_args if unet else {}})
        train(cfg, ckpt, progress=False, log=print)
        took.write_text(f"{time.time() - t0:.1f}")
    train_s = float(took.read_text()) if took.exists() else float("nan")
    payload = read_checkpoint(ckpt)
    meta = meta_from_checkpoint_dict(payload["config"], payload["meta"])
    model, _ = load_checkpoint(ckpt)
    model.eval()
    params = CRFParams()
    plain_path, crf_path = out / f"{stem}.onnx", out / f"{stem}_crf.onnx"
    edgeseg.export_onnx(model, plain_path, meta=replace(meta))
    rep = edgeseg.export_onnx(model, crf_path, meta=replace(meta), crf=params)
    print("export --crf parity:", rep.summary())
    plain, local = open_session(plain_path), open_session(crf_path)
    val = dataset_for(meta, "lits", "val")
    k, ignore = meta.num_classes, meta.ignore_index
    cms = {name: ConfusionMatrix(k, ignore) for name in ("none", "dense", "local")}
    bands = {name: ConfusionMatrix(k, ignore) for name in ("none", "dense", "local")}
    agree = total = 0
    for i in range(len(val)):
        image, mask = val.raw(i)
        scores = session_scores(plain, image)
        labels = {"none": scores.argmax(0), "dense": crf_labels(plain, image, params, scores),
                  "local": predict(local, image)["labels"]}
        near = np.where(band(mask, a.band), mask, ignore)
        for name, lab in labels.items():
            cms[name].update(lab, mask)
            bands[name].update(lab, near)
        agree += int((labels["local"] == labels["dense"]).sum())
        total += mask.size
    found = search(plain, val, base=params, progress=False)
    # why: the dense CRF with one kernel off at a time (the network's scores computed once)
    ablation = {}
    for name, p in (("appearance only (w2 0)", replace(params, w_smoothness=0.0)),
                    ("smoothness only (w1 0)", replace(params, w_appearance=0.0)),
                    ("appearance with θα 10", replace(params, theta_alpha=10.0))):
        cm = ConfusionMatrix(k, ignore)
        for i in range(len(val)):
            image, mask = val.raw(i)
            cm.update(crf_labels(plain, image, p, session_scores(plain, image)), mask)
        ablation[name] = cm.scores().miou
    best_params, best_miou = next((p, m) for p, m in found if p is not None)

    # ms per 512² image: one validation slice resized, each CRF alone (the local layer exported by itself)
    image, _ = val.raw(len(val) // 2)
    big = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=(512, 512), mode="bilinear",
                                          align_corners=False)[0].numpy()
    logits = np.stack([session_scores(plain, big)])[0]
    from edgeseg.crf import mean_field_crf
    from edgeseg.runtime.prepost import preprocess

    layer = mean_field_crf(params, meta.mean, meta.std, meta.pixel_scale).eval()
    x = torch.from_numpy(preprocess(big, meta)[0])
    layer_path = out / "crf_layer.onnx"
    torch.onnx.export(layer, (x, torch.from_numpy(logits)[None]), str(layer_path), dynamo=False, opset_version=17,
                      input_names=["x", "logits"])
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(layer_path), so, providers=["CPUExecutionProvider"])
    feed = {"x": x.numpy(), "logits": logits[None].astype(np.float32)}
    dense_ms = median_ms(lambda: dense_crf(big, logits, params), a.repeats)
    local_ms = median_ms(lambda: sess.run(None, feed), a.repeats)
    net_ms = median_ms(lambda: plain.run(x.numpy()), a.repeats)

    res = {
        "machine": machine_info(), "train_iterations": a.iterations, "train_seconds": round(train_s, 1),
        "val_slices": len(val), "params": asdict(params), "band_px": a.band,
        "miou": {n: cm.scores().miou for n, cm in cms.items()},
        "boundary_miou": {n: cm.scores().miou for n, cm in bands.items()},
        "per_class_iou": {n: list(map(float, cm.scores().per_class_iou)) for n, cm in cms.items()},
        "local_vs_dense_label_agreement": agree / total,
        "search": [{"params": None if p is None else asdict(p), "miou": m} for p, m in found],
        "search_best": {"params": asdict(best_params), "miou": best_miou},
        "dense_ablation_miou": ablation,
        "ms_512": {"network_onnxruntime": net_ms, "dense_crf": dense_ms, "local_crf_onnxruntime": local_ms},
        "export_parity": rep.summary(),
    }
    Path("benchmarks/results").mkdir(parents=True, exist_ok=True)
    result = Path("benchmarks/results") / ("crf_cpu" if unet else f"crf_cpu_{a.model}")
    result.with_suffix(".json").write_text(json.dumps(res, indent=1))
    m, b, t = res["miou"], res["boundary_miou"], res["ms_512"]
    gain_d, gain_l = m["dense"] - m["none"], m["local"] - m["none"]
    md = [
        f"# DeepLab's fully connected CRF on LiTS ({a.model}, quickstart recipe)", "",
        "Machine: {cpu} ({cores} cores, GPU: {gpu}); torch {torch}, onnxruntime {onnxruntime}, numpy {numpy}, "
        "pydensecrf2 1.1, OMP_WAIT_POLICY={omp_wait_policy}; other engineers' jobs shared the CPU, so compare the "
        "times side by side, not absolutely.".format(**res["machine"]), "",
        f"{a.model} (quickstart recipe, {a.iterations} steps, {train_s / 60:.1f} min here), {len(val)} held-out LiTS slices "
        f"(128²). CRF: DeepLab's parameters (w1 {params.w_appearance:g}, θα {params.theta_alpha:g}, θβ "
        f"{params.theta_beta:g}, w2 {params.w_smoothness:g}, θγ {params.theta_gamma:g}, {params.iterations} "
        f"iterations); the exportable layer cuts both kernels to a {params.window}×{params.window} window.", "",
        "| | mIoU | boundary mIoU (±%d px) | gain (mIoU points) |" % a.band, "|---|---:|---:|---:|",
        f"| no CRF | {m['none']:.4f} | {b['none']:.4f} | – |",
        f"| dense CRF (pydensecrf2) | {m['dense']:.4f} | {b['dense']:.4f} | {100 * gain_d:+.2f} |",
        f"| exportable CRF (ONNX Runtime, `export --crf`) | {m['local']:.4f} | {b['local']:.4f} | {100 * gain_l:+.2f} |",
        "",
        f"Label agreement, exportable vs dense CRF: {100 * res['local_vs_dense_label_agreement']:.2f}% of pixels.",
        f"Share of the dense CRF's gain the exportable layer keeps: "
        + (f"{100 * gain_l / gain_d:.0f}%." if gain_d > 1e-9 else "n/a: the dense CRF does not gain here (below)."), "",
        "Per-class IoU (background, liver, tumour): "
        + "; ".join(f"{n} " + ", ".join(f"{v:.3f}" for v in res["per_class_iou"][n]) for n in ("none", "dense", "local"))
        + ".", "",
        f"Dense CRF grid search on the same held-out slices (`edgeseg eval --crf-search`, {len(found) - 1} settings): "
        f"best mIoU {best_miou:.4f} at w1 {best_params.w_appearance:g}, θα {best_params.theta_alpha:g}, θβ "
        f"{best_params.theta_beta:g} (tuned on the split it scores, as DeepLab tunes on val: an upper bound).", "",
        "The dense CRF with one change to DeepLab's parameters, mIoU: "
        + "; ".join(f"{n} {v:.4f}" for n, v in ablation.items()) + "."
        + (" Why it loses here: the appearance kernel at θα 121 px spans the whole 128² slice, and liver, tumour "
           "and the surrounding soft tissue lie within a few θβ of each other in the CT window, so the majority class "
           "(background) floods small structures (see the tumour IoU). DeepLab's values were set on VOC photographs "
           "(~500², colour edges at object boundaries); the network's own boundaries on these slices are already "
           "where the intensity edges are, leaving the CRF little to sharpen." if gain_d < 0 else ""), "",
        "ms per 512² image (a val slice resized; median of %d; the CRF alone, logits given):" % a.repeats, "",
        "| | ms |", "|---|---:|",
        f"| the network itself (ONNX Runtime) | {t['network_onnxruntime']:.1f} |",
        f"| dense CRF (pydensecrf2, host) | {t['dense_crf']:.1f} |",
        f"| exportable CRF layer (ONNX Runtime) | {t['local_crf_onnxruntime']:.1f} |", "",
        f"Export parity of the graph with the layer (ONNX Runtime vs PyTorch, FP32 row): {rep.summary()}", "",
        f"Made by `benchmarks/crf_lits.py --model {a.model}`.",
    ]
    result.with_suffix(".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
