"""Timing: round-robin rounds after warm-up, the first run's peak memory, the load average, the machine, and the
environment the timing rules ask for (DESIGN.md: OMP_WAIT_POLICY=PASSIVE before the thread pools start).

A ``Probe`` samples the machine while the variants are timed (Jetson's tegrastats power sampler is one). bench owns
this interface and takes a probe as an argument, so nothing here imports whoever implements one (``deploy/``)."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
from tqdm import tqdm

from edgeseg.runtime import Session


class Probe(Protocol):
    """Samples while the ``with`` block times the variants; ``fields(throughput_ips)`` then gives the report row's
    extra fields (kept only where one variant was timed, so the samples are its own)."""

    def __enter__(self) -> object: ...

    def __exit__(self, *exc) -> object: ...

    def fields(self, throughput_ips: float | None = None) -> dict: ...


def _read_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def first_run_peak_mb(session: Session, batch: np.ndarray) -> float | None:
    """Peak resident memory the first run of a fresh session adds (activations, arenas, workspace),
    above what the process held before it. Linux only (else None). Call before any other run of the
    session: later runs reuse what the first one allocated. PyTorch on a CUDA device: the device memory the
    first run adds (the caching allocator's peak above what it held)."""
    import ctypes

    device = str(getattr(session, "device", ""))
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        session.run(batch)
        return max(0, torch.cuda.max_memory_allocated(device) - before) / 2**20

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand memory freed by earlier sessions back, so it is not reused
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the VmHWM high-water mark
        before = _read_kb("VmRSS")
        session.run(batch)
        return max(0, _read_kb("VmHWM") - before) / 1024
    except OSError:
        return None


# glibc's mallopt parameters and their defaults (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = -1, -4, 128 * 1024, 65536


@contextlib.contextmanager
def freed_memory_kept() -> Iterator[None]:
    """While timing, what a call frees stays in the process for the next call (glibc: no mmap for large blocks, no
    trimming); afterwards the defaults are back and the kept memory is returned (``malloc_trim``). Memory handed
    back to the kernel can be handed on to the host: on this project's VMs touching it again after ~3 s idle cost
    ~15 s per GB (benchmarks/results/memory_return_cpu.md), so a variant that allocates large temporaries per call
    (PyTorch eager Mask R-CNN) ran 1.5-7x slower in some rounds than in others. A no-op without glibc."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _glibc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc has both; musl and macOS do not)
    except (OSError, AttributeError):
        return None
    return libc


def clocked(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and process CPU milliseconds of one call of ``fn``: their ratio says whether the call waited (memory paged
    in, another process on the cores) or computed."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000


def time_callables(fns: dict[str, Callable[[], object]], warmup: int, repeats: int, progress: bool = False,
                   sync: Callable[[], object] = lambda: None) -> dict[str, list[float]]:
    """Milliseconds per call of each function, timed round-robin after ``warmup`` calls each (side by side,
    so drifting clocks and neighbours affect all alike), with ``freed_memory_kept``. ``sync`` waits for queued GPU
    work."""
    with freed_memory_kept():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        sync()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in tqdm(range(repeats), desc="timing", leave=False, disable=not progress):
            for k, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                sync()
                times[k].append((time.perf_counter() - t0) * 1000)
    return times


def time_round_robin(sessions: dict[str, Session], batch: np.ndarray, warmup: int, repeats: int,
                     progress: bool = False) -> dict[str, list[float]]:
    return time_callables({k: functools.partial(s.run, batch) for k, s in sessions.items()}, warmup, repeats, progress)


def loadavg() -> str | None:
    """/proc/loadavg's 1, 5 and 15-minute averages (Linux), to record how busy the machine was."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def machine() -> dict:
    from edgeseg.sysinfo import machine_info

    return machine_info()


def set_timing_environment() -> None:
    """Must run before torch/onnxruntime start their thread pools (the CLI calls it first)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def summarize(times: dict[str, list[float]], base: str | None = None) -> dict[str, dict]:
    """Each timed name's median, p90 and runs (ms); with ``base`` its speed-up over ``base`` measured side by side:
    of the medians, and ``speedup_paired``, the median of the per-round ratios (round-robin rounds pair the runs)."""
    ref = np.asarray(times[base]) if base is not None else None
    out = {}
    for name, values in times.items():
        t = np.asarray(values)
        row = {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90)), "runs": len(t),
               "times_ms": [round(float(v), 2) for v in t]}
        if ref is not None:
            row.update(speedup=float(np.median(ref) / np.median(t)), speedup_paired=float(np.median(ref / t)))
        out[name] = row
    return out


def sgemm_gflops(n: int = 2048, runs: int = 5) -> float:
    """This machine's float32 matrix-product rate (numpy, GFLOP/s), measured at run time: machines differ
    (ENVIRONMENT.md's 72 GFLOP/s was an AVX2 machine; an AVX-512 one gave 130). One product of ``n``×``n``
    matrices warms up, then ``runs`` are timed together."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    t = time.perf_counter()
    for _ in range(runs):
        a @ a
    return 2 * n**3 * runs / (time.perf_counter() - t) / 1e9
