"""Reports of INT8 accuracy work (``edgeseg.quant.sensitivity``): the per-layer sensitivity table and bar chart, the
layers mixed precision kept in float, and the calibration methods compared. Markdown, JSON and PNG, written
atomically beside each other like the bench reports."""
from __future__ import annotations

import json
from pathlib import Path

from edgeseg.bench.timing import loadavg
from edgeseg.io import atomic_path, write_text_atomic


def sensitivity_markdown(report: dict, title: str | None = None) -> str:
    """``analyze``'s report (optionally with ``mixed`` and ``calibration`` sections) as markdown."""
    lines = [f"# {title or report['model'] + ': INT8 sensitivity by layer'}", "",
             f"Metric: {report['metric']} (points, 0-100), scored on {report['scored_on']} ({report['batches']} batches); "
             f"FP32 scores {report['fp32_score']:.2f}, the whole graph in INT8 ({report['calibration']} calibration, "
             f"{report['weight_bits']}-bit {'per-channel' if report['per_channel'] else 'per-tensor'} weights) drops "
             f"{report['int8_drop']:.2f} pts. {report['graphs_scored']} graphs derived from one calibration, scored in "
             f"{report['seconds']:.1f} s" + (f"; load average {report['loadavg']}" if report.get("loadavg") else "") + ".",
             "", "Ranked by the drop of the layer alone in INT8 (everything else float). \"Alone float\": the whole graph "
             "in INT8 but this layer; \"gain\": what keeping it float brings back.", "",
             "| rank | layer | op | nodes | drop alone INT8 | drop alone float | gain in float |",
             "|---:|---|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {r['layer'].replace('|', '/')} | {r['op']} | {len(r['nodes'])} | {r['drop_alone_int8']:.2f} | "
              f"{r['drop_alone_float']:.2f} | {r['gain_in_float']:+.2f} |" for k, r in enumerate(report["layers"], 1)]
    mixed = report.get("mixed")
    if mixed:
        lines += ["", "## Mixed precision", "",
                  f"Budget {mixed['max_drop']:g} pts: {len(mixed['float_layers'])} of {len(report['layers'])} layers kept "
                  f"in float ({', '.join(mixed['float_layers']) or 'none'}); drop {mixed['int8_drop']:.2f} -> "
                  f"{mixed['drop']:.2f} pts. Written to {mixed['path']}."]
    if report.get("calibration_comparison"):
        lines += ["", *calibration_markdown(report["calibration_comparison"])]
    return "\n".join(lines) + "\n"


def calibration_markdown(comparison: dict) -> list[str]:
    """``compare_calibration``'s rows as a table, and which method wins."""
    lines = ["## Calibration methods", "", f"Metric: {comparison['metric']}, scored on {comparison['scored_on']}.", "",
             "| method | score | drop (pts) | seconds |", "|---|---:|---:|---:|"]
    for r in comparison["rows"]:
        if r["drop"] is None:
            lines.append(f"| {r['method']} | failed: {r['error'][:120]} | – | – |")
        else:
            lines.append(f"| {r['method']}{' (best)' if r['method'] == comparison['best'] else ''} | {r['score']:.2f} | "
                         f"{r['drop']:.2f} | {r['seconds']:.1f} |")
    lines += ["", f"Best: {comparison['best'] or 'none (every method failed)'}."]
    lines += [f"Note: {n}." for n in comparison.get("notes") or []]
    return lines


def sensitivity_plot(report: dict, path: str | Path, top: int = 30) -> None:
    """Horizontal bars per layer (the ``top`` most sensitive): the drop alone in INT8 and the gain kept in float."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = report["layers"][:top][::-1]  # most sensitive at the top
    y = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, max(3.0, 0.32 * len(rows) + 1.5)))
    ax.barh(y + 0.2, [r["drop_alone_int8"] for r in rows], 0.4, label="drop, layer alone in INT8", color="tab:red")
    ax.barh(y - 0.2, [r["gain_in_float"] for r in rows], 0.4, label="gain, layer alone kept float", color="tab:blue")
    ax.set_yticks(y, [r["layer"][-40:] for r in rows], fontsize=7)
    ax.set_xlabel(f"points of {report['metric']}")
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_title(f"{report['model']}: INT8 sensitivity by layer (whole graph drops {report['int8_drop']:.2f} pts)", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_sensitivity(report: dict, out_dir: str | Path, name: str, title: str | None = None) -> list[Path]:
    """``name``.json, .md and .png (the bar chart) of a sensitivity report, the load average recorded."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {**report, "loadavg": report.get("loadavg") or loadavg()}
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    write_text_atomic(paths[0], json.dumps(report, indent=2, default=str) + "\n")
    write_text_atomic(paths[1], sensitivity_markdown(report, title))
    sensitivity_plot(report, paths[2])
    return paths


__all__ = ["calibration_markdown", "sensitivity_markdown", "sensitivity_plot", "write_sensitivity"]
