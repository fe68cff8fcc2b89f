"""Streaming inference (edgeseg.stream, `edgeseg infer MODEL SOURCE --out OUT`): every frame of a file, the output
video's frames and fps, labels equal to per-image inference, the live sources' drop policy, and each bad input as one
line, a non-zero exit and a finalised (or no) output video."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av")

import edgeseg  # noqa: E402
from edgeseg.data import load_image  # noqa: E402
from edgeseg.errors import SourceError  # noqa: E402
from edgeseg.models import create  # noqa: E402
from edgeseg.runtime import open_session, predict  # noqa: E402
from edgeseg.runtime.stream import Source  # noqa: E402

H, W, FPS = 64, 96, 12


def frames(n, h=H, w=W, seed=0):
    """A bright bar moving over a flat colour: something for the model to see, different in every frame."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        img[h // 4: h // 2, (3 * i) % w: (3 * i) % w + w // 3] = 255
        out.append(img)
    return out


def write_video(path, images, fps=FPS, fmt=None, options=None):
    with av.open(str(path), "w", format=fmt, options=options or {}) as c:
        s = c.add_stream("libx264", rate=fps)
        s.height, s.width = images[0].shape[:2] if images else (H, W)
        s.pix_fmt = "yuv420p"
        c.start_encoding()
        for im in images:
            for p in s.encode(av.VideoFrame.from_ndarray(im, format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def read_back(path):
    """(frames decoded, frame rate) of a video. The rate is the stream's base rate: a live stream's video holds its
    frames at their source times (a dropped frame's place is held by the one before), so its average rate is lower."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return sum(1 for _ in c.decode(v)), v.base_rate


def edgeseg_cli(*args, timeout=300):
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.run([sys.executable, "-m", "edgeseg", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.fixture
def cli(capfd):
    """``edgeseg`` in this process (no interpreter and torch start per call): what it returns and writes to the
    file descriptors, FFmpeg's included."""
    from edgeseg.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


def one_line_error(r, *words):
    assert r.returncode not in (0, None), r.stdout + r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def no_temp_files(folder):
    return not [p for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream")
    torch.manual_seed(0)
    net = create("unet_padded", num_classes=3, base_width=4)
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():  # no bias, louder weights: every class appears somewhere, labels worth comparing
        last.bias.zero_()
        last.weight.mul_(20)
    report = edgeseg.export_onnx(net, d / "m.onnx")
    assert report.passed
    return d / "m.onnx"


@pytest.fixture(scope="module")
def video(model):
    return write_video(model.parent / "v.mp4", frames(16))


@pytest.fixture
def http_video(model):
    """Serve bytes over HTTP as a live stream: ``serve(data, stall_after=None, chunk, delay)`` -> URL. A stalled
    server keeps the connection open and sends nothing more (a camera gone silent)."""
    stop = threading.Event()
    servers = []

    def serve(data, stall_after=None, chunk=1880, delay=0.0):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                sent = 0
                try:
                    while not stop.is_set():
                        if stall_after is not None and sent >= stall_after:
                            stop.wait()
                            return
                        if sent >= len(data):
                            return
                        self.wfile.write(data[sent:sent + chunk])
                        self.wfile.flush()
                        sent += chunk
                        stop.wait(delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/live.ts"

    yield serve
    stop.set()
    for server in servers:
        server.shutdown()
        server.server_close()


def test_file_stream_every_frame_video_fps_and_labels_equal_per_image_infer(model, video, tmp_path):
    out, labels = tmp_path / "o.mp4", tmp_path / "labels"
    session = open_session(model)
    s = edgeseg.stream(session, video, out=out, labels_dir=labels, summary_json=tmp_path / "s.json")
    got = [(frame, result) for frame, result in s]
    assert len(got) == 16 and sorted(p.name for p in labels.iterdir()) == [f"{i:06d}.png" for i in range(16)]
    assert read_back(out) == (16, FPS)
    with av.open(str(out)) as c:
        assert c.streams.video[0].average_rate == FPS and c.streams.video[0].frames == 16
    assert no_temp_files(tmp_path)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["frames"] == 16 and summary["dropped"] == 0 and summary["stopped"] == "end"
    assert summary["fps"] > 0 and summary["latency_ms"]["p99"] >= summary["latency_ms"]["p50"] > 0
    assert set(summary["stage_ms"]) == {"decode", "infer", "draw", "write"}
    seen = set()
    for i, (frame, result) in enumerate(got):
        png = np.asarray(Image.open(labels / f"{i:06d}.png"))
        assert np.array_equal(png, result["labels"])
        # per-image inference, as `edgeseg infer IMAGE` runs it: the frame saved as a PNG, read as a float image
        Image.fromarray(frame).save(tmp_path / "frame.png")
        assert np.array_equal(png, predict(session, load_image(tmp_path / "frame.png", 3))["labels"])
        seen |= set(np.unique(png).tolist())
    assert len(seen) > 1, "a model that says one class everywhere proves nothing"


def test_cli_stream_writes_video_labels_and_summary(model, video, tmp_path):
    out = tmp_path / "run" / "o.mp4"
    r = edgeseg_cli("infer", model, video, "--out", out, "--labels-dir", tmp_path / "labels", "--max-frames", 10)
    assert r.returncode == 0, r.stderr
    assert "10 frames (0 dropped)" in r.stdout and "FPS" in r.stdout and "p99" in r.stdout
    assert read_back(out) == (10, FPS) and len(list((tmp_path / "labels").iterdir())) == 10
    summary = json.loads(Path(f"{out}.json").read_text())
    assert summary["frames"] == 10 and summary["outputs"]["video"] == str(out)
    assert no_temp_files(out.parent)


class PacedSource(Source):
    """A live source paced against inference, not by the clock: frames 0-9 each wait until the frame before has been
    run (slower than inference: nothing dropped); frames 10-19 come while frame 10 is still running (faster than
    inference: the newest one is kept, the ones it replaced are dropped)."""

    live = True
    name = "paced"

    def __init__(self, session):
        self.session = session

    def frames(self):
        for i, frame in enumerate(frames(20)):
            if i < 10:
                yield frame
                assert self.session.done.wait(10)  # this frame has been run
                self.session.done.clear()
            else:
                yield frame
                if i == 10:
                    assert self.session.started.wait(10)  # frame 10 is in the model
        self.session.gate.set()  # frame 19 has been handed over: let frame 10 finish


class GatedSession:
    """A session whose 11th run (frame 10) waits for the source's gate."""

    def __init__(self, session):
        self.inner, self.meta, self.runs = session, session.meta, 0
        self.done, self.started, self.gate = threading.Event(), threading.Event(), threading.Event()

    def run(self, batch):
        self.runs += 1
        if self.runs == 11:
            self.started.set()
            assert self.gate.wait(10)
        out = self.inner.run(batch)
        self.done.set()
        return out


def test_live_source_keeps_the_newest_frame_and_counts_drops(model):
    session = GatedSession(open_session(model))
    s = edgeseg.stream(session, PacedSource(session))
    indices = [int(np.asarray(frame)[H // 4, :, 0].argmax()) for frame, _ in s]  # where the bar starts: the frame
    assert len(indices) == 12 and s.summary["dropped"] == 8 and s.summary["frames"] == 12
    bar = [frames(20)[i][H // 4, :, 0].argmax() for i in range(20)]
    assert indices == [bar[i] for i in list(range(11)) + [19]]  # 0-9 slow, 10 running while 11-18 are replaced by 19


class SubmittingSession:
    """A session with the asynchronous ``submit`` the TensorRT session offers; each run finishes after a random
    delay, so the inference stage's two workers finish out of order and must hand frames on in order."""

    def __init__(self, session):
        self.inner, self.meta, self.rng, self.lock = session, session.meta, np.random.default_rng(0), threading.Lock()

    def run(self, batch):
        raise AssertionError("the stream uses submit() where a session offers it")

    def submit(self, batch):
        with self.lock:
            delay = float(self.rng.uniform(0, 0.03))
        out = self.inner.run(batch)

        class Pending:
            def result(self):
                time.sleep(delay)
                return out

        return Pending()


def test_a_session_that_submits_keeps_two_frames_in_flight_in_order(model, video):
    session = open_session(model)
    got = list(edgeseg.stream(SubmittingSession(session), video))
    assert len(got) == 16
    for frame, result in got:
        assert np.array_equal(result["labels"], predict(session, frame)["labels"])
    decoded = [frame for frame, _ in edgeseg.stream(session, video)]
    assert all(np.array_equal(a, b) for (a, _), b in zip(got, decoded))


def test_grey_models_see_pillows_grey():
    from types import SimpleNamespace

    from edgeseg.runtime.stream import model_frame

    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    grey = model_frame(rgb, SimpleNamespace(in_channels=1))
    assert grey.shape == (50, 70, 1) and np.array_equal(grey[..., 0], np.asarray(Image.fromarray(rgb).convert("L")))


def test_corrupt_truncated_and_empty_videos(cli, model, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    one_line_error(cli("infer", model, junk, "--out", tmp_path / "a.mp4"), "junk.mp4", "cannot read", " -- ")
    # moov at the front (faststart): the header promises 16 frames, the data stops after about half
    whole = write_video(tmp_path / "whole.mp4", frames(16), options={"movflags": "faststart"}).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) * 6 // 10])
    out = tmp_path / "cut_out.mp4"
    one_line_error(cli("infer", model, cut, "--out", out), "cut.mp4", "truncated", "output so far is kept")
    n, fps = read_back(out)
    assert 0 < n < 16 and fps == FPS and no_temp_files(tmp_path)
    for name, fmt in (("zero.mkv", "matroska"), ("zero.mp4", "mp4")):
        empty = write_video(tmp_path / name, [], fmt=fmt)
        one_line_error(cli("infer", model, empty, "--out", tmp_path / "z.mp4"), name, "no video")
        assert not (tmp_path / "z.mp4").exists() and no_temp_files(tmp_path)


def test_resolution_change_stops_at_the_changed_frame(cli, model, tmp_path):
    a = write_video(tmp_path / "a.ts", frames(8), fmt="mpegts").read_bytes()
    b = write_video(tmp_path / "b.ts", frames(8, 96, 128, seed=1), fmt="mpegts").read_bytes()
    spliced = tmp_path / "spliced.ts"
    spliced.write_bytes(a + b)
    out = tmp_path / "o.mp4"
    line = one_line_error(cli("infer", model, spliced, "--out", out, "--labels-dir", tmp_path / "labels"),
                          "changes resolution at frame 8", "96×64 -> 128×96")
    assert "ffmpeg" in line
    assert read_back(out) == (8, FPS) and len(list((tmp_path / "labels").iterdir())) == 8


def test_frames_over_max_pixels_are_refused_from_the_header(cli, model, video, tmp_path):
    one_line_error(cli("infer", model, video, "--out", tmp_path / "o.mp4", "--max-pixels", 5000),
                   "96×64", "over the limit of 5,000", "--max-pixels")
    assert not (tmp_path / "o.mp4").exists()


def test_unreachable_and_silent_urls_time_out_in_one_line(cli, model, http_video, tmp_path):
    t = time.monotonic()
    one_line_error(cli("infer", model, "rtsp://127.0.0.1:1/x", "--out", tmp_path / "o.mp4", "--timeout", 2),
                   "cannot open rtsp://127.0.0.1:1/x", "--timeout")
    silent = http_video(b"", stall_after=0)  # answers the request, then sends nothing
    one_line_error(cli("infer", model, silent, "--out", tmp_path / "o.mp4", "--timeout", 1),
                   "cannot open", "no data for 1 s")
    one_line_error(cli("infer", model, "/dev/video9", "--out", tmp_path / "o.mp4", "--timeout", 1), "cannot open /dev/video9")
    assert time.monotonic() - t < 60 and not (tmp_path / "o.mp4").exists()


def test_disconnect_mid_stream_keeps_a_playable_video(model, http_video, tmp_path):
    data = write_video(tmp_path / "long.ts", frames(40), fmt="mpegts").read_bytes()
    url = http_video(data, stall_after=len(data) // 2)
    out = tmp_path / "o.mp4"
    with pytest.raises(SourceError, match="disconnected after .* no data for 1 s"):
        for _ in edgeseg.stream(model, url, out=out, timeout=1.0):
            pass
    n, fps = read_back(out)
    assert 0 < n < 40 and fps == FPS and no_temp_files(tmp_path)


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 128 + 15, "terminated")])
def test_signal_mid_stream_finalises_the_video(model, http_video, tmp_path, sig, code, word):
    data = write_video(tmp_path / "long.ts", frames(480), fmt="mpegts").read_bytes()
    url = http_video(data, chunk=940, delay=0.05)  # a live stream: a few frames at a time, for longer than the test
    out = tmp_path / "o.mp4"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-m", "edgeseg", "infer", str(model), url, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # not ignored when run in the background
    try:
        deadline = time.monotonic() + 60
        while not [p for p in tmp_path.iterdir() if p.name.startswith(".o.mp4.")] and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(0.5)  # a few frames into the video
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    one_line_error(r, word)
    assert proc.returncode == code
    n, fps = read_back(out)
    assert n > 0 and fps == FPS and no_temp_files(tmp_path)
    assert "frames" in stdout and json.loads(Path(f"{out}.json").read_text())["frames"] >= n


def test_gstreamer_pipeline_without_opencv_gstreamer_is_one_line(cli, model, tmp_path):
    try:
        import cv2  # noqa: F401

        pytest.skip("OpenCV is installed here: the refusal is for machines without it (the pipeline is for Jetson)")
    except ImportError:
        pass
    one_line_error(cli("infer", model, "videotestsrc num-buffers=3 ! videoconvert ! appsink", "--out", tmp_path / "o.mp4"),
                   "GStreamer", "JetPack's OpenCV")
