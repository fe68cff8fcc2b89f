"""Reports: markdown tables, JSON and plots of a bench report."""
from __future__ import annotations

import json
from pathlib import Path

from edgeseg.io import write_text_atomic


def markdown(report: dict, title: str) -> str:
    m = report["machine"]
    lines = [f"# {title}", "",
             machine_line(m) + (f"; load average {report['loadavg']}" if report.get("loadavg") else "") + ".",
             f"Input {report['batch']}×C×{report['size'][0]}×{report['size'][1]}"
             + (f" (the first validation image of {report['data']})" if report.get("data") else "")
             + "; latency per batch, median and p90 over round-robin runs of each model's variants; speed-up = PyTorch eager "
             "median / this median, measured side by side. Agreement with the reference (PyTorch where there is a PyTorch "
             "model, else the FP32 ONNX): argmax agreement (softmax), thresholded-foreground agreement (sigmoid), "
             "|A∩B|/|A∪B| of the masks of detections matched by box overlap (instance). Accuracy: mIoU (softmax), "
             "foreground IoU (sigmoid), mask AP (instance), PQ (panoptic).", "",
             "| model | backend | precision | median ms | p90 ms | speed-up vs torch | img/s | 1st-run peak MB | model MB | "
             "agreement (kind, vs) | accuracy |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    for r in report["rows"]:
        agree = r.get("agreement", r.get("agreement_vs_torch"))
        kind = f" ({r['agreement_kind']}, vs {r['agreement_reference']})" if agree is not None and r.get("agreement_kind") else ""
        precision = r["precision"] + (" (FAILED its check)" if r.get("failed_check") else "")
        lines.append(f"| {r['model']} | {r['backend']} | {precision} | {r['latency_ms_median']:.1f} | "
                     f"{r['latency_ms_p90']:.1f} | {f(r.get('speedup_vs_torch'), '.2f')}{'×' if r.get('speedup_vs_torch') else ''} | "
                     f"{r['throughput_ips']:.2f} | {f(r['first_run_peak_mb'], '.0f')} | {f(r['model_mb'], '.3g')} | {f(agree, '.4f')}{kind} | "
                     f"{'–' if r['accuracy'] is None else r['accuracy_metric'] + ' ' + format(r['accuracy'], '.4f')} |")
    powered = [r for r in report["rows"] if r.get("fps_per_watt") is not None]
    if powered:
        lines += ["", "| model | backend | precision | img/s | mean W | max W | img/s per W |", "|---|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['model']} | {r['backend']} | {r['precision']} | {r['throughput_ips']:.2f} | {r['power_w_mean']:.2f} | "
                  f"{r['power_w_max']:.2f} | {r['fps_per_watt']:.2f} |" for r in powered]
    for r in report["rows"]:
        lines += profile_markdown(r) + stages_markdown(r)
    for n in report.get("notes") or []:
        lines += ["", f"Note: {n}."]
    if report.get("not_measured"):
        lines += ["", f"Not measured in this run (stopped first): {', '.join(report['not_measured'])}."]
    return "\n".join(lines) + "\n"


def profile_markdown(row: dict) -> list[str]:
    """A row's ``profile`` (``edgeseg bench --profile``) as markdown: its top op types, then its top layers."""
    p = row.get("profile")
    if not p:
        return []
    lines = ["", f"### {row['model']} {row['backend']} {row['precision']}: where the time goes", "",
             f"{p['tool']}; mean of {p['runs']} runs after warm-up, in a pass of its own (not the timed runs). "
             f"{'The' if p['layer_count'] is None else p['layer_count']} profiled {'ops' if p['layer_count'] is None else 'layers'} "
             f"sum to {p['layers_ms']:.3f} ms a run (the end-to-end median is {row['latency_ms_median']:.3f} ms).", "",
             "| op type | layers | ms per run | share |", "|---|---:|---:|---:|"]
    lines += [f"| {o['op']} | {'–' if o['layers'] is None else o['layers']} | {o['ms']:.3f} | {o['share']:.1%} |"
              for o in p["op_types"]]
    if p["layers"]:
        lines += ["", "| layer | op type | ms per run | share |", "|---|---|---:|---:|"]
        lines += [f"| {layer['name'].replace('|', '/')} | {layer['op']} | {layer['ms']:.3f} | {layer['share']:.1%} |"
                  for layer in p["layers"]]
    return lines


def write_report(report: dict, out_dir: str | Path, name: str, title: str) -> list[Path]:
    """``name``.json, .md and .png (the Pareto plot), and ``name``_examples.png where the report holds example
    predictions (``bench_files`` with a data set)."""
    from edgeseg.viz import examples_plot, pareto_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    shown = report.get("examples") or {}
    write_text_atomic(paths[0], json.dumps({k: v for k, v in report.items() if k != "examples"}, indent=2) + "\n")
    write_text_atomic(paths[1], markdown(report, title))
    pareto_plot(report["rows"], paths[2], title)
    if shown.get("images") and shown.get("columns"):
        paths.append(out / f"{name}_examples.png")
        examples_plot(shown, paths[3], f"{report.get('data', '')}: ground truth and each variant's prediction")
    return paths


def stages_markdown(row: dict) -> list[str]:
    """A row's ``stages`` (``edgeseg bench --profile --stages``) as a table: ms and share of the run per stage."""
    st = row.get("stages")
    if not st:
        return []
    title = f"### {row['model']} {row['backend']} {row['precision']}: stages"
    if "skipped" in st:
        return ["", title, "", f"Not cut into stages: {st['skipped']}."]
    lines = ["", title, "",
             f"{st['tool']}; median of {st['rounds']} rounds after warm-up. The stages sum to "
             f"{st['sum_ms']:.1f} ms against the whole graph's {st['run_ms']:.1f} ms (median of the per-round ratio "
             f"{st['sum_over_run']:.3f}; of the least CPU times {st['best_sum_over_run']:.3f}: what is over 1 is the "
             "cost of the cuts).", "",
             "| stage | nodes | ms | % |", "|---|---:|---:|---:|"]
    lines += [f"| {s['stage']} | {s['nodes']} | {s['ms']:.1f} | {100 * s['share']:.1f} |" for s in st["stages"]]
    lines += [f"| **sum of stages** | {sum(s['nodes'] for s in st['stages'])} | {st['sum_ms']:.1f} | "
              f"{100 * st['sum_ms'] / st['run_ms']:.1f} |", f"| **run** | – | {st['run_ms']:.1f} | 100 |"]
    return lines


def machine_line(m: dict, libraries: str = "") -> str:
    """The machine and library versions a result was measured with (``timing.machine()``), without the final stop;
    ``libraries`` (e.g. "torchvision 0.29, ") is listed after torch."""
    return (f"Machine: {m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); torch {m['torch']} "
            f"({m['torch_threads']} threads), {libraries}onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, "
            f"python {m['python']}, OMP_WAIT_POLICY={m['omp_wait_policy']}")


def load_note(around: list[tuple[str, str | None, str | None]], busy: float = 2.5) -> str:
    """One paragraph on how busy the machine was: ``around`` is (what was measured, ``timing.loadavg()`` before,
    after). Above ``busy`` (1-min average) it says the absolute times are inflated and noisy."""
    shared = any(float((v or "0").split()[0]) > busy for _, *both in around for v in both)
    return (("**The machine was shared with other jobs during this run** (1-min load average above "
             f"{busy:g} around " if shared else "1/5/15-min load averages around ")
            + "; ".join(f"{what}: {before or '?'} before, {after or '?'} after" for what, before, after in around)
            + ("): absolute times are inflated and noisy; ratios measured side by side less so." if shared else "."))


def table(columns: list[str], rows: list[list], text_columns: int = 1) -> list[str]:
    """A markdown table: the first ``text_columns`` columns left-aligned, the numbers after them right-aligned."""
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(columns))) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def write_json_markdown(report: dict, out_dir: str | Path, name: str, text: str) -> list[Path]:
    """``name``.json (the report) and ``name``.md (``text``), each written atomically: a stopped run keeps what it had
    measured until then."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.json", out / f"{name}.md"]
    write_text_atomic(paths[0], json.dumps(report, indent=1) + "\n")
    write_text_atomic(paths[1], text)
    return paths


def goal_lines(items: list[tuple[str, float, bool]], fmt: str = ".2f", unit: str = "×") -> list[str]:
    """A goal's verdict per measurement: (what, value, met) as '- what: value — met.'."""
    return [f"- {what}: {value:{fmt}}{unit} — {'met' if met else 'NOT met'}." for what, value, met in items]


def written_by(report: dict, script: str) -> str:
    """'Written by `<script>` on <date> (`<command>`; ...).': every command whose models the report holds (a model
    measured by an ``--append`` run keeps its own ``command``)."""
    commands = dict.fromkeys(m.get("command", report["command"]) for m in report["models"])
    return f"Written by `{script}` on {report['date']} (" + "; ".join(f"`{c}`" for c in commands) + ")."


def notes_markdown(notes: list[str], not_measured=()) -> list[str]:
    """A report's closing '## Notes' section: one bullet per note, and the models a stopped run did not reach."""
    lines = ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return lines + ([f"- Not measured in this run: {', '.join(not_measured)}."] if not_measured else [])


def stages_side_by_side(columns: dict[str, dict], stages) -> list[str]:
    """One model's stages measured several ways as one table: ``columns`` maps a label to ``{"ms": {stage: ms},
    "sum_ms", "run_ms", "share": bool}`` (``share``: add a column of each stage's % of that way's run)."""
    def cells(c: dict, ms: float) -> list[str]:
        return [f"{ms:.0f}"] + ([f"{100 * ms / c['run_ms']:.1f}"] if c.get("share") else [])

    rows = [[k, *(x for c in columns.values() for x in cells(c, c["ms"].get(k, 0)))] for k in stages]
    rows.append(["**sum of stages**", *(x for c in columns.values() for x in cells(c, c["sum_ms"]))])
    rows.append(["**run**", *(x for c in columns.values() for x in [f"{c['run_ms']:.0f}"] + (["100"] if c.get("share") else []))])
    return table(["stage", *(x for label, c in columns.items() for x in [f"{label} ms"] + (["%"] if c.get("share") else []))],
                 rows)
