"""Frames in, decisions out: the float contract against the deploy graph, one model per task, on a 1280×720 video.

For each model and I/O form, side by side in one process: the model run's median (``session.run`` alone), the host's
share of a frame (everything ``edgeseg.runtime.predict`` does around the run: pre-processing, post-processing), the
bytes the model returns per frame, and a stream of the video through ``edgeseg.stream`` (decode, infer, draw and
encode as pipelined stages) with its FPS against 1/(model run median) and its p50/p99 frame latency.
Random weights (no pretrained ones are had offline): the host's work does not depend on them, except for instance
post-processing, which grows with the detections kept.

    .venv/bin/python benchmarks/stream_bench.py --out benchmarks/results --frames 8 --runs 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from edgeseg.bench import loadavg, machine, set_timing_environment, table, write_json_markdown

MODELS = {  # name -> (zoo arguments, trace side)
    "unet_padded": ({"num_classes": 19, "in_channels": 3, "base_width": 16}, 128),
    "maskrcnn_resnet18_fpn": ({"num_classes": 5, "in_channels": 3}, 128),
    "lpsnet_resnet18": ({"num_classes": 5, "in_channels": 3}, 256),
}


def write_video(path: Path, frames: int, size=(720, 1280), fps: int = 10) -> None:
    """A scene of moving discs on a gradient: every frame different, as a camera's are."""
    import av
    import numpy as np

    h, w = size
    yy, xx = np.mgrid[:h, :w]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            img = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 96)], -1).astype(np.uint8)
            for k in range(6):
                cx, cy = (150 + 180 * k + 25 * i) % w, (120 + 90 * k + 15 * i) % h
                img[(xx - cx) ** 2 + (yy - cy) ** 2 < (40 + 10 * k) ** 2] = (40 * k, 255 - 40 * k, 30 * k)
            out.mux(video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(video.encode())


def export_pair(name: str, workdir: Path) -> dict:
    import torch

    import edgeseg
    from edgeseg.models import create

    kwargs, side = MODELS[name]
    torch.manual_seed(0)
    model = create(name, **kwargs).eval()
    paths = {}
    for io in ("tensors", "frames"):
        path = workdir / f"{name}_{io}.onnx"
        edgeseg.export_onnx(model, path, io=io, sample=torch.randn(1, 3, side, side))  # raises where its check fails
        paths[io] = path
    return paths


def measure(name: str, paths: dict, video: Path, runs: int) -> list[dict]:
    """Per I/O form: run median, host ms, output bytes (round-robin over the forms), then a stream of the video."""
    import av

    from edgeseg.runtime import open_session, predict
    from edgeseg.runtime.stream import stream

    sessions = {io: open_session(p) for io, p in paths.items()}
    with av.open(str(video)) as src:
        frame = next(src.decode(video=0)).to_ndarray(format="rgb24")
    samples: dict[str, list[dict]] = {io: [] for io in sessions}
    for io, s in sessions.items():  # warm-up
        predict(s, frame)
    for _ in range(runs):
        for io, s in sessions.items():
            t: dict = {}
            predict(s, frame, timings=t)
            samples[io].append(t)
    rows = []
    for io, s in sessions.items():
        run = statistics.median(t["run_ms"] for t in samples[io])
        host = statistics.median(t["pre_ms"] + t["post_ms"] for t in samples[io])
        with tempfile.TemporaryDirectory() as tmp:
            st = stream(s, str(video), out=Path(tmp) / "out.mp4")
            for _ in st:
                pass
            summary = st.summary
        rows.append({"model": name, "io": io, "run_ms": run, "host_ms": host, "host_share": host / (run + host),
                     "output_bytes": samples[io][0]["output_bytes"], "stream_fps": summary["fps"],
                     "fps_vs_run": summary["fps"] * run / 1e3, "latency_ms": summary["latency_ms"],
                     "stage_ms": summary["stage_ms"], "frames": summary["frames"]})
        print(json.dumps(rows[-1]))
    return rows


def markdown(report: dict) -> str:
    lines = ["# Streaming on the CPU: float contract vs deploy graph (1280×720)", "",
             f"Machine: {report['machine'].get('cpu', '?')}; load average (1/5/15 min) before/after each model: "
             + "; ".join(f"{x['model']} {x['before']} / {x['after']}" for x in report["load"]) + "; "
             f"{report['frames']} frames per stream, {report['runs']} timed runs per form (medians); random weights.", ""]
    lines += table(["model", "I/O", "model run ms", "host ms (pre + post)", "host share", "MB out / frame", "stream FPS",
                    "FPS × run", "latency p50 / p99 ms"],
                   [[r["model"], r["io"], f"{r['run_ms']:.0f}", f"{r['host_ms']:.1f}", f"{100 * r['host_share']:.1f} %",
                     f"{r['output_bytes'] / 1e6:.2f}", f"{r['stream_fps']:.2f}", f"{r['fps_vs_run']:.2f}",
                     f"{r['latency_ms']['p50']:.0f} / {r['latency_ms']['p99']:.0f}"] for r in report["rows"]], 2)
    lines += ["", "FPS × run = stream FPS / (1 / model run median): 1.0 means decoding, drawing and encoding are hidden "
              "behind the model run by the pipeline. Stage times (ms per frame, each stage in its own thread):", ""]
    for r in report["rows"]:
        lines.append(f"- {r['model']} {r['io']}: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stage_ms"].items()))
    return "\n".join(lines) + "\n"


def main() -> None:
    set_timing_environment()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--models", default=",".join(MODELS))
    a = p.parse_args()
    out = Path(a.out)
    names = a.models.split(",")
    previous = out / "stream_cpu.json"  # a later run of some models keeps the others' rows
    report = json.loads(previous.read_text()) if previous.is_file() else {"rows": [], "load": []}
    report.update(machine=machine(), frames=a.frames, runs=a.runs)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "in.mp4"
        write_video(video, a.frames)
        for name in names:
            before = loadavg()
            rows = measure(name, export_pair(name, Path(tmp)), video, a.runs)
            report["rows"] = [r for r in report["rows"] if r["model"] != name] + rows
            report["load"] = [x for x in report["load"] if x["model"] != name] + [
                {"model": name, "before": before, "after": loadavg()}]
            write_json_markdown(report, out, "stream_cpu", markdown(report))  # each model's rows as soon as they exist
    print(markdown(report))


if __name__ == "__main__":
    main()
