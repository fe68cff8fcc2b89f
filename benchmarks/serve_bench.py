"""perf_analyzer against `edgeseg serve` on loopback (issue 24): throughput, p50/p99 at concurrency 1-16, dynamic
batching on and off, failed requests (Triton's own statistics), and the server's overhead over a direct
``open_session`` call at concurrency 1.

    .venv/bin/python benchmarks/serve_bench.py [--models unet_padded,maskrcnn_resnet18_fpn] [--interval-ms 2000]
        [--append] [--report-only]

One server holds each model twice (dynamic batching on / off); the deploy graphs (uint8 frames in, compact outputs)
are served, as in the README's client. perf_analyzer is build/perf_analyzer (README, Serving). Writes
benchmarks/results/serve_cpu.{json,md} after every model.
"""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before onnxruntime starts its thread pool; the server inherits it

import numpy as np  # noqa: E402
import torch  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402

import edgeseg  # noqa: E402
from edgeseg.bench import loadavg, machine, time_callables, write_json_markdown  # noqa: E402
from edgeseg.bench.driver import bench_log, driver_parser, run_models  # noqa: E402
from edgeseg.deploy.serve import TritonServer, free_ports, write_serve_repository  # noqa: E402
from edgeseg.models import create  # noqa: E402
from edgeseg.runtime import open_session  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PERF = ROOT / "build" / "perf_analyzer" / "perf_analyzer"
# Small settings: 256×256 frames; Mask R-CNN with 200 proposals and 20 detections (its mask head costs per detection).
# The third field: None = time windows of --interval-ms; k = windows of max(k, concurrency) requests, for a model whose
# batch of 8 outlasts a time window (perf_analyzer then finds no request in it).
MODELS = {"unet_padded": ({"num_classes": 3, "base_width": 16}, 256, None),
          "maskrcnn_resnet18_fpn": ({"num_classes": 3, "max_detections": 20, "proposals": 200}, 256, 4)}
CONCURRENCY = (1, 2, 4, 8, 16)
log = bench_log("serve_bench")


def bench(name: str, work: Path, interval_ms: int, ports: list[int]) -> dict:
    kwargs, side, count = MODELS[name]
    torch.manual_seed(0)
    path = work / f"{name}.onnx"
    edgeseg.export_onnx(create(name, **kwargs).eval(), path, io="frames", sample=torch.randn(1, 3, side, side))
    repo = work / f"repo_{name}"
    for batching in (True, False):
        write_serve_repository(path, repo, f"{name}_{'batching' if batching else 'nobatching'}", dynamic_batching=batching)
    frame = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), np.uint8)
    direct = open_session(path, threads=os.cpu_count())  # what the server's model runs (edgeseg_threads = the cores)
    result: dict = {"model": name, "model_args": kwargs, "frame": [side, side, 3], "loadavg_start": loadavg(), "points": []}
    with TritonServer(repo, *ports, host="127.0.0.1", exit_timeout_s=10, log=work / f"{name}_server.log") as server:
        result["tritonserver"] = server.version()
        client = httpclient.InferenceServerClient(server.url)
        x = httpclient.InferInput("input", list(frame.shape), "UINT8")
        x.set_data_from_numpy(frame)
        for batching in (True, False):  # warm-up: each stub's first runs (ORT's allocations) are not measured
            for _ in range(3):
                client.infer(f"{name}_{'batching' if batching else 'nobatching'}", [x])
        # Batching on and off alternate at each concurrency, so a pair is measured under the same neighbours' load.
        for c in CONCURRENCY:
            for batching in (True, False):
                served = f"{name}_{'batching' if batching else 'nobatching'}"
                if c == 1:  # the direct call, just before and after the served c1 point (same frame, 2 threads)
                    direct_ms = time_callables({"direct": lambda: direct.run(frame)}, 3, 15)["direct"]
                point = server.perf_analyzer(PERF, served, f"input:{side},{side},3", c, work / f"{served}_c{c}.csv",
                                             interval_ms, count and max(count, c)) | {"dynamic_batching": batching}
                if c == 1:
                    direct_ms += time_callables({"direct": lambda: direct.run(frame)}, 1, 15)["direct"]
                    point["direct_ms"] = float(np.median(direct_ms))
                    if "p50_ms" in point:
                        point["overhead_p50"] = point["p50_ms"] / point["direct_ms"] - 1
                point["loadavg"] = loadavg()
                result["points"].append(point)
                log(f"{served} {({k: round(v, 3) if isinstance(v, float) else v for k, v in point.items()})}")
    # What batching can buy on this CPU, without the server: ORT's time per image at batch 1, 4 and 8, round-robin.
    frames = np.random.default_rng(1).integers(0, 256, (8, side, side, 3), np.uint8)
    t = time_callables({str(b): functools.partial(direct.run, frames[:b]) for b in (1, 4, 8)}, 2, 5)
    result["direct_ms_per_image"] = {b: float(np.median(v)) / int(b) for b, v in t.items()}
    result["loadavg_end"] = loadavg()
    return result


def goals(res: dict) -> dict:
    """The issue's three goals, from one model's points."""
    p = {(q["dynamic_batching"], q["concurrency"]): q for q in res["points"]}
    c1, c8, c4 = p.get((True, 1), {}), p.get((True, 8), {}), p.get((True, 4), {})
    return {"c8_over_c1_batching": c8.get("throughput_ips", 0) / c1["throughput_ips"] if c1.get("throughput_ips") else None,
            "p99_over_p50_c4": c4["p99_ms"] / c4["p50_ms"] if c4.get("p50_ms") else None,
            "overhead_c1": c1.get("overhead_p50"),
            "failed": sum(q.get("fail", 0) for q in res["points"]) + sum(q["perf_analyzer_rc"] != 0 for q in res["points"])}


def write(report: dict, out: Path) -> None:
    m, served = report["machine"], next((r["tritonserver"] for r in report["models"]), None)  # one server version
    lines = ["# `edgeseg serve` on the CPU: perf_analyzer on loopback", "",
             f"{m['cpu']} ({m['cores']} cores, GPU: {m['gpu'] or 'none'}); onnxruntime {m['onnxruntime']}, torch {m['torch']}, "
             f"python {m['python']}, tritonserver {served}, perf_analyzer {report['perf_analyzer']}, "
             f"OMP_WAIT_POLICY={m['omp_wait_policy']}. HTTP, random uint8 frames into the deploy graphs, one model instance "
             "(2 ORT threads); latency is the client's (perf_analyzer), the server columns its averages; 'direct' is "
             "`open_session(...).run` on the same frame in the bench process, around the served c1 point.", ""]
    for res in report["models"]:
        g = goals(res)
        lines += [f"## {res['model']} {res['model_args']}, frames {res['frame']}", "",
                  f"Load average {res['loadavg_start']} at the start, {res['loadavg_end']} at the end. Each point: 3 windows "
                  + (f"of max({MODELS[res['model']][2]}, concurrency) requests." if MODELS[res["model"]][2] else
                     f"of {report['interval_ms']} ms."), "",
                  "| batching | conc. | infer/s | p50 ms | p99 ms | server infer ms | server queue ms | mean batch | "
                  "failed | direct ms | overhead |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for q in sorted(res["points"], key=lambda q: (not q["dynamic_batching"], q["concurrency"])):
            if "p50_ms" not in q:
                lines.append(f"| {'on' if q['dynamic_batching'] else 'off'} | {q['concurrency']} | perf_analyzer failed: "
                             f"{q['error'][-120:]!r} |||||||||")
                continue
            lines.append(f"| {'on' if q['dynamic_batching'] else 'off'} | {q['concurrency']} | {q['throughput_ips']:.2f} | "
                         f"{q['p50_ms']:.1f} | {q['p99_ms']:.1f} | {q['server_infer_ms']:.1f} | {q['server_queue_ms']:.1f} | "
                         f"{q['mean_batch']:.2f} | {q['fail']} | " + (f"{q['direct_ms']:.1f} | {100 * q['overhead_p50']:+.1f} % |"
                                                                       if "direct_ms" in q else "– | – |"))
        fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
        if res.get("direct_ms_per_image"):
            lines += ["", "Direct ORT, ms per image at batch " + " / ".join(res["direct_ms_per_image"]) + ": "
                      + " / ".join(f"{v:.1f}" for v in res["direct_ms_per_image"].values()) + "."]
        lines += ["", f"Goals: c8 with batching / c1 = {fmt(g['c8_over_c1_batching'], '.2f')}× (goal ≥ 1.3×); "
                  f"p99 / p50 at c4 = {fmt(g['p99_over_p50_c4'], '.2f')} (≤ 3); overhead at c1 = "
                  f"{fmt(g['overhead_c1'] and 100 * g['overhead_c1'], '+.1f')} % (≤ 10 %); failed requests {g['failed']} (0).", ""]
    write_json_markdown(report, out, "serve_cpu", "\n".join(lines + report.get("notes", [])) + "\n")


def main() -> None:
    p = driver_parser(__doc__, list(MODELS), ROOT / "benchmarks" / "results")
    p.add_argument("--interval-ms", type=int, default=2000)
    a = p.parse_args()
    ports = free_ports(3)  # one set for every model's server (each stops before the next starts)
    header = {"machine": machine(), "interval_ms": a.interval_ms, "perf_analyzer": "the tritonclient 2.41 wheel's binary"}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        run_models(a, "serve_cpu", header, lambda name: bench(name, Path(tmp), a.interval_ms, ports),
                   lambda r: write(r, Path(a.out)), log, order=list(MODELS), keep_going=False)
    print((Path(a.out) / "serve_cpu.md").read_text())


if __name__ == "__main__":
    main()
