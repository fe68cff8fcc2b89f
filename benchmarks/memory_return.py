"""What touching memory again costs on this machine after the process handed it back, by how long it sat idle,
with glibc's defaults and with ``edgeseg.bench.timing.freed_memory_kept`` (what the timing loops now use).

    .venv/bin/python benchmarks/memory_return.py [--mb 512] [--out benchmarks/results]

Each step allocates ``--mb`` MB (numpy), writes every byte and frees it, after a pause; wall and process CPU time.
With glibc's defaults a block this large is its own mapping, returned to the kernel when freed. Writes
``<out>/memory_return_cpu.{json,md}``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgeseg.bench import loadavg, machine, machine_line, set_timing_environment, table, write_json_markdown
from edgeseg.bench.timing import clocked, freed_memory_kept

PAUSES_S = (0, 0, 1, 3, 10, 0, 30)


def touch(nbytes: int) -> tuple[float, float]:
    """Wall and process CPU seconds to allocate, fill and free ``nbytes``."""
    wall_ms, cpu_ms = clocked(lambda: np.empty(nbytes, np.uint8).fill(1))  # the block is freed when the call returns
    return wall_ms / 1000, cpu_ms / 1000


def series(nbytes: int) -> list[dict]:
    rows = []
    for pause in PAUSES_S:
        time.sleep(pause)
        wall, cpu = touch(nbytes)
        rows.append({"pause_s": pause, "wall_s": wall, "cpu_s": cpu})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=int, default=512)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = p.parse_args()
    set_timing_environment()  # as every driver, so the machine line reads the same
    n, before = a.mb * 2**20, loadavg()
    default = series(n)
    with freed_memory_kept():
        kept = series(n)
    report = {"machine": machine(), "mb": a.mb, "loadavg": [before, loadavg()], "glibc_default": default, "kept": kept}
    gb = a.mb / 1024
    rows = [[f"{d['pause_s']} s", f"{d['wall_s']:.2f}", f"{d['cpu_s']:.2f}", f"{d['wall_s'] / gb:.2f}",
             f"{k['wall_s']:.2f}", f"{k['cpu_s']:.2f}"] for d, k in zip(default, kept)]
    text = [f"# Touching {a.mb} MB again after freeing it, by idle time", "",
            machine_line(report["machine"]) + f"; load average {before} before, {report['loadavg'][1]} after.",
            "Each row: sleep, then allocate, write and free the block (numpy); the first row of each column is the "
            "process's first use of that much memory. glibc defaults: the block is its own mapping, unmapped when "
            "freed; kept: `freed_memory_kept` (no mmap, no trimming: the freed block stays in the process).", ""]
    text += table(["idle before", "default wall s", "default CPU s", "default s per GB", "kept wall s", "kept CPU s"],
                  rows)
    text += ["", "Memory the kernel gets back is handed on to the host after a few seconds idle (this VM's free page "
             "reporting); touching it again then costs the host's page-in, here counted as the process's CPU time. "
             "A benchmark variant that allocates large temporaries per call pays it in some rounds and not others, so "
             "the timing loops (`time_callables`, `stage_times`, `module_stage_times`) keep freed memory in the "
             "process while they run.", ""]
    write_json_markdown(report, a.out, "memory_return_cpu", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
