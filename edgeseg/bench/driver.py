"""What every benchmark driver in ``benchmarks/`` shares, so that a driver holds only what it measures: its log line,
the one-line reason a model was not measured, the common arguments (``--models``, ``--out``, ``--append``,
``--report-only``), per-model option values, and the loop that measures models one by one into a report that
survives a stopped run and can be extended by a later one."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from edgeseg.bench.run import measure_each, reason  # noqa: F401  (reason: the drivers' one line)


def bench_log(name: str) -> Callable[[str], None]:
    """A driver's progress line on stderr: ``[name HH:MM:SS] message``."""
    return lambda msg: print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def driver_parser(doc: str | None, models: Sequence[str], out: str | Path,
                  append_help: str = "keep the other models of the report already there") -> argparse.ArgumentParser:
    """The arguments every driver takes; the driver adds its own (``append_help``: what ``--append`` keeps, where a
    driver's report is not one entry per model)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(models), help="comma-separated (default: all)")
    p.add_argument("--out", default=str(out), help="the folder the report is written to")
    p.add_argument("--append", action="store_true", help=append_help)
    p.add_argument("--report-only", action="store_true", help="rewrite the markdown (and plots) from the JSON there")
    return p


def per_model(text: str, default, cast=int) -> Callable[[str], object]:
    """``"5,maskrcnn_resnet50_fpn=3"`` -> name -> value: a bare value replaces ``default``, ``name=value`` is that
    model's own."""
    own = {k: cast(v) for k, _, v in (p.partition("=") for p in text.split(",") if "=" in p)}
    bare = [cast(p) for p in text.split(",") if p and "=" not in p]
    fallback = bare[0] if bare else default
    return lambda name: own.get(name, fallback)


def run_models(a: argparse.Namespace, name: str, header: dict, measure_one: Callable[[str], dict | None],
               write: Callable[[dict], object], log: Callable[[str], None] = print, order: Sequence[str] = (),
               keep_going: bool = True) -> dict:
    """Measure ``a.models`` one by one (``measure_each``) into ``header`` + ``models`` + ``notes``, writing after
    each. ``--append`` keeps the other models (and their notes) of ``<a.out>/<name>.json``; ``--report-only`` only
    rewrites from it. Models are kept in ``order`` where given. ``header["notes"]``, where given, is the report's
    notes list itself (a driver appends to it while it measures)."""
    path, names = Path(a.out) / f"{name}.json", [n for n in a.models.split(",") if n]
    report = {"notes": [], **header, "models": []}
    if a.report_only or a.append:
        if not path.is_file():
            raise SystemExit(f"{path} does not exist: nothing to {'rewrite' if a.report_only else 'append to'}")
        before = json.loads(path.read_text())
        if a.report_only:
            write(before)
            return before
        report["models"] = [m for m in before["models"] if m["model"] not in names]
        report["notes"] += [n for n in before.get("notes", []) if n.split(":")[0] not in names and n not in report["notes"]]

    def write_sorted(r: dict) -> None:
        rank = {m: i for i, m in enumerate(order)}
        r["models"].sort(key=lambda m: rank.get(m["model"], len(rank)))
        write(r)

    return measure_each(names, measure_one, report, write_sorted, log, keep_going)


def trained(cfg, path: str | Path, allow_train: bool = True, log: Callable[[str], None] = print) -> Path:
    """``path``: the checkpoint of ``cfg`` (an ``edgeseg.train`` config), trained here first where it is missing."""
    from edgeseg.train import train

    path = Path(path)
    if not path.is_file():
        if not allow_train:
            raise SystemExit(f"{path} is missing and training was not allowed")
        log(f"{cfg.model}: training {cfg.iterations} steps into {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        train(cfg, path, progress=False, log=lambda *_: None)
    return path
