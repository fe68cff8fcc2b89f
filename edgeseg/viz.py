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


def instance_ids(masks: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """H×W uint16 map of D×H×W mask probabilities (in decreasing score): pixel = 1 + the index of the
    highest-scoring detection covering it, 0 where none does."""
    ids = np.zeros(masks.shape[1:], np.uint16)
    for k in range(len(masks) - 1, -1, -1):  # lower scores first, so higher ones end on top
        ids[masks[k] >= threshold] = k + 1
    return ids


def draw_instances(image: np.ndarray, found: dict[str, np.ndarray], class_names: list[str], alpha: float = 0.5) -> np.ndarray:
    """image C×H×W in [0, 1] and one image's detections (boxes, scores, labels, masks) -> H×W×3 uint8: a colour
    per instance blended into its mask, its box, and "class score" above the box."""
    from PIL import Image, ImageDraw

    ids = instance_ids(found["masks"])
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


def pareto_plot(rows: list[dict], path: str | Path, title: str) -> None:
    """Latency (log x) against the accuracy metric (mIoU, mask AP; without accuracy: model size) for every
    benchmark row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have_acc = any(r.get("accuracy") is not None for r in rows)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"fp32": "o", "fp16": "s", "int8": "^"}
    for backend in sorted({r["backend"] for r in rows}):
        for precision in sorted({r["precision"] for r in rows}):
            sel = [r for r in rows if r["backend"] == backend and r["precision"] == precision]
            if not sel:
                continue
            ys = [r["accuracy"] if have_acc else r["model_mb"] for r in sel]
            ax.scatter([r["latency_ms_median"] for r in sel], ys, marker=markers.get(precision, "x"),
                       label=f"{backend} {precision}", s=50)
            for r, y in zip(sel, ys):
                ax.annotate(r["model"], (r["latency_ms_median"], y), fontsize=6, alpha=0.7,
                            xytext=(3, 3), textcoords="offset points")
    if have_acc:
        pts = sorted((r["latency_ms_median"], r["accuracy"]) for r in rows if r.get("accuracy") is not None)
        front, best = [], -1.0
        for x, y in pts:
            if y > best:
                front.append((x, y))
                best = y
        ax.plot(*zip(*front), "k--", lw=0.8, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("median latency per batch (ms, log scale)")
    metrics = sorted({r["accuracy_metric"] for r in rows if r.get("accuracy") is not None})
    ax.set_ylabel(" / ".join(metrics) if have_acc else "model size (MB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
