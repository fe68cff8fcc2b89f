"""Pictures: colour label maps, overlays, and the accuracy-vs-latency plot."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeseg.io import atomic_path


def palette(n: int) -> np.ndarray:
    """n distinct RGB colours (background black), the same for the same n."""
    rng = np.random.default_rng(7)
    colours = rng.integers(40, 256, size=(max(n, 1), 3), dtype=np.uint8)
    colours[0] = 0
    return colours


def colourize(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return palette(num_classes)[np.clip(labels, 0, num_classes - 1)]


def overlay(image: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float = 0.5) -> np.ndarray:
    """image: C×H×W in [0, 1]; returns H×W×3 uint8 with the label colours blended in (background untouched)."""
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    rgb = (np.clip(rgb.transpose(1, 2, 0), 0, 1) * 255).astype(np.float32)
    colour = colourize(labels, num_classes).astype(np.float32)
    fg = (labels > 0)[..., None]
    return np.where(fg, (1 - alpha) * rgb + alpha * colour, rgb).astype(np.uint8)


def draw_instances(image: np.ndarray, found: dict[str, np.ndarray], class_names: list[str], alpha: float = 0.5) -> np.ndarray:
    """image C×H×W in [0, 1] and one image's detections as ``edgeseg.runtime.predict`` gives them (boxes, scores,
    labels and the ``instance_map``) -> H×W×3 uint8: a colour per instance blended into its mask, its box,
    and "class score" above the box."""
    from PIL import Image, ImageDraw

    ids = found["instance_map"]
    colours = palette(len(found["boxes"]) + 1)
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image[:3]
    rgb = (np.clip(rgb.transpose(1, 2, 0), 0, 1) * 255).astype(np.float32)
    blended = np.where((ids > 0)[..., None], (1 - alpha) * rgb + alpha * colours[ids].astype(np.float32), rgb)
    picture = Image.fromarray(blended.astype(np.uint8))
    pen = ImageDraw.Draw(picture)
    for k, (box, score, label) in enumerate(zip(found["boxes"], found["scores"], found["labels"])):
        colour = tuple(int(c) for c in colours[k + 1])
        x1, y1, x2, y2 = (float(v) for v in box)
        pen.rectangle([x1, y1, x2, y2], outline=colour)
        name = class_names[label] if 0 <= label < len(class_names) else str(int(label))
        pen.text((x1 + 1, max(0.0, y1 - 11)), f"{name} {score:.2f}", fill=colour)
    return np.asarray(picture)


def save_png(path: str | Path, array: np.ndarray) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def y_range(values: list[float], min_width: float = 0.05) -> tuple[float, float]:
    """An axis range for metric values in [0, 1]: the data padded by a tenth of its spread, at least
    ``min_width`` wide, inside [0, 1]."""
    lo, hi = min(values), max(values)
    pad = max(0.1 * (hi - lo), (min_width - (hi - lo)) / 2, 0.0)
    lo, hi = lo - pad, hi + pad
    if lo < 0:
        lo, hi = 0.0, min(1.0, hi - lo)
    if hi > 1:
        lo, hi = max(0.0, lo - (hi - 1)), 1.0
    return lo, hi


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, accuracy) points no other point beats on both (faster and at least as accurate)."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def pareto_plot(rows: list[dict], path: str | Path, title: str) -> tuple[float, float]:
    """Latency (log x) against the accuracy metric (mIoU, foreground IoU, mask AP; without accuracy: model size)
    for every benchmark row: one colour per runtime, one marker per precision, the Pareto front dashed. Returns the
    y-axis range drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    have_acc = any(r.get("accuracy") is not None for r in rows)
    sel = [r for r in rows if (r.get("accuracy") is not None if have_acc else r.get("model_mb") is not None)]
    y_of = (lambda r: r["accuracy"]) if have_acc else (lambda r: r["model_mb"])
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    colours = {"torch": "tab:red", "onnxruntime": "tab:blue", "tensorrt": "tab:green"}
    for r in sel:
        ax.scatter(r["latency_ms_median"], y_of(r), marker=markers.get(r["precision"], "x"),
                   color=colours.get(r["backend"], "tab:gray"), s=60, edgecolors="black", linewidths=0.4, zorder=3)
    models = sorted({r["model"] for r in sel}, key=lambda m: min(y_of(r) for r in sel if r["model"] == m))
    for k, m in enumerate(models):  # one label per model (the markers say runtime and precision), above its variants
        mine = [r for r in sel if r["model"] == m]
        x = float(np.exp(np.mean([np.log(r["latency_ms_median"]) for r in mine])))
        ax.annotate(m, (x, max(y_of(r) for r in mine)), fontsize=8, ha="center", xytext=(0, 9 + 9 * (k % 2)),
                    textcoords="offset points", zorder=2.5,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.7})
    handles = [Line2D([], [], ls="", marker="o", color=colours.get(b, "tab:gray"), label=b)
               for b in sorted({r["backend"] for r in sel})]
    handles += [Line2D([], [], ls="", marker=markers.get(p, "x"), color="gray", label=p)
                for p in sorted({r["precision"] for r in sel})]
    if have_acc and sel:
        front = pareto_front([(r["latency_ms_median"], r["accuracy"]) for r in sel])
        ax.plot(*zip(*front), "k--", lw=1, marker="o", mfc="none", ms=12, zorder=2)
        handles.append(Line2D([], [], color="black", ls="--", marker="o", mfc="none", label="Pareto front"))
        ax.set_ylim(*y_range([r["accuracy"] for r in sel]))
    if sel:
        xs = [r["latency_ms_median"] for r in sel]
        ax.set_xlim(min(xs) / 1.4, max(xs) * 1.4)
    ax.set_xscale("log")
    ax.set_xlabel("median latency per batch (ms, log scale)")
    metrics = sorted({r["accuracy_metric"] for r in sel if r.get("accuracy") is not None})
    ax.set_ylabel(" / ".join(metrics) if have_acc else "model size (MB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    ylim = tuple(float(v) for v in ax.get_ylim())
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return ylim


def examples_plot(shown: dict, path: str | Path, title: str) -> None:
    """A grid: one row per example image; columns the image, its ground truth, then each variant's prediction
    (semantic and binary: label overlays; instance: masks and boxes). ``shown`` as ``bench_files`` gives it:
    images, truth (label maps, or instance ids), task, class_names, columns (title, predictions, task,
    num_classes, class_names)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, truth, columns = shown["images"], shown["truth"], shown["columns"]
    ncol = 2 + len(columns)
    fig, axes = plt.subplots(len(images), ncol, figsize=(1.9 * ncol, 2.0 * len(images) + 0.5), squeeze=False)
    for i, (image, gt) in enumerate(zip(images, truth)):
        k = max(len(shown["class_names"]), int(gt[gt != 255].max(initial=0)) + 1)
        panels = [("image", overlay(image, np.zeros(gt.shape, np.int64), 1)),
                  ("ground truth", overlay(image, np.where(gt == 255, 0, gt), k))]
        for c in columns:
            p = c["predictions"][i]
            if isinstance(p, dict):
                panels.append((c["title"], draw_instances(image, p, c["class_names"])))
            else:
                panels.append((c["title"], overlay(image, p.astype(np.int64), max(c["num_classes"], int(p.max()) + 1))))
        for ax, (name, picture) in zip(axes[i], panels):
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
