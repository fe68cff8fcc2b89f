"""``edgeseg serve``: a real Triton Inference Server on 127.0.0.1, driven by Triton's own client (tritonclient) and,
where it is installed, perf_analyzer. Every request loop is bounded in count and time; every server is stopped in
its fixture's teardown."""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeseg
from edgeseg.deploy.serve import (ServeError, TritonServer, check_port, find_tritonserver, free_ports,
                                  write_serve_repository)
from edgeseg.deploy.triton import write_triton_repository
from edgeseg.models import create
from edgeseg.runtime import open_session

ROOT = Path(__file__).resolve().parents[1]

try:
    find_tritonserver()
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException
except Exception as e:  # noqa: BLE001 - any reason the server or client cannot be had
    pytest.skip(f"Triton server or client not installed ({e}); scripts/setup.sh installs both", allow_module_level=True)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A float-contract U-Net and its deploy graph (uint8 frames in, labels out). An instance deploy graph is left
    out: its export and load alone take minutes here (checked by hand: every output equal)."""
    folder = tmp_path_factory.mktemp("serve_models")
    torch.manual_seed(0)
    net = create("unet_padded", num_classes=3, base_width=4).eval()
    edgeseg.export_onnx(net, folder / "unet.onnx")
    edgeseg.export_onnx(net, folder / "unet_frames.onnx", io="frames")
    return folder


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    repo = tmp_path_factory.mktemp("serve_repo")
    write_serve_repository(models / "unet.onnx", repo, max_queue_delay_us=20000)  # 20 ms: batches form reliably
    write_serve_repository(models / "unet_frames.onnx", repo)
    http_port, grpc_port, metrics_port = free_ports(3)
    s = TritonServer(repo, http_port, grpc_port, metrics_port, host="127.0.0.1", exit_timeout_s=5, log=repo / "server.log")
    s.start()
    yield s
    s.stop()
    assert s.process.poll() is not None


def infer(client, model: str, x: np.ndarray, module=None):
    module = module or httpclient
    dtype = "UINT8" if x.dtype == np.uint8 else "FP32"
    i = module.InferInput("input", list(x.shape), dtype)
    i.set_data_from_numpy(x)
    return client.infer(model, [i])


def test_served_outputs_equal_open_session(server, models):
    http, grpc = httpclient.InferenceServerClient(server.url), grpcclient.InferenceServerClient(server.grpc_url)
    rng = np.random.default_rng(0)
    cases = [("unet", rng.random((2, 3, 48, 80), np.float32)), ("unet_frames", rng.integers(0, 256, (2, 37, 53, 3), np.uint8)),
             ]
    for name, x in cases:
        ref = open_session(models / f"{name}.onnx", threads=2).run(x)
        for client, module in ((http, httpclient), (grpc, grpcclient)):
            got = infer(client, name, x, module)
            for k, v in ref.items():
                out = got.as_numpy(k)
                assert out.dtype == v.dtype, (name, k)
                np.testing.assert_allclose(out.reshape(v.shape), v, rtol=1e-5, atol=1e-5, err_msg=f"{name}/{k}")
    http.close()
    grpc.close()


def test_health_metadata_and_metrics(server):
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("unet_frames")
    meta = client.get_model_metadata("unet_frames")
    assert meta["inputs"] == [{"name": "input", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    assert [o["name"] for o in meta["outputs"]] == ["labels"]
    config = client.get_model_config("unet_frames")
    edgeseg_meta = json.loads(config["parameters"]["edgeseg_meta"]["string_value"])
    assert edgeseg_meta["io"] == "frames" and edgeseg_meta["task"] == "semantic"
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10).read().decode()
    assert "nv_inference_request_success" in text
    client.close()


def test_concurrent_clients_form_batches_and_get_their_own_answers(server, models):
    """8 clients × 12 requests, each checked against its own input; Triton's statistics show batches > 1."""
    session = open_session(models / "unet.onnx", threads=1)
    rng = np.random.default_rng(1)
    inputs = [rng.random((1, 3, 32, 32), np.float32) for _ in range(96)]
    refs = [session.run(x)["logits"] for x in inputs]
    failures: list[str] = []

    def client_loop(indices):
        client = httpclient.InferenceServerClient(server.url)
        for i in indices:
            out = infer(client, "unet", inputs[i]).as_numpy("logits")
            if not np.allclose(out, refs[i], atol=1e-4):
                failures.append(f"request {i}: its answer is not its own")
        client.close()

    threads = [threading.Thread(target=client_loop, args=(range(k, 96, 8),)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures and not any(t.is_alive() for t in threads)
    stats = httpclient.InferenceServerClient(server.url).get_inference_statistics("unet")["model_stats"][0]
    sizes = {int(b["batch_size"]) for b in stats["batch_stats"]}
    assert max(sizes) > 1, f"no batch formed: batch sizes {sizes}"


def test_free_ports_differ_and_can_be_bound():
    ports = free_ports(3)
    assert len(set(ports)) == 3
    for port in ports:
        check_port("127.0.0.1", port, "--http-port")  # raises where it is taken


def test_version_and_stats_count_what_was_sent(server):
    """The server's version is the one its client reports; the counters grow by exactly the requests the model ran
    (3, one at a time: 3 executions); one that Triton refuses for its shape before the model counts in none."""
    client = httpclient.InferenceServerClient(server.url)
    assert server.version() == client.get_server_metadata()["version"]
    before = server.stats("unet_frames")
    for _ in range(3):
        infer(client, "unet_frames", np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(InferenceServerException):
        infer(client, "unet_frames", np.zeros((1, 16, 16, 4), np.uint8))
    after = server.stats("unet_frames")
    assert {k: after[k] - before[k] for k in after} == {"success": 3, "fail": 0, "inferences": 3, "executions": 3}
    client.close()


def test_bad_requests_get_errors_and_the_server_keeps_serving(server):
    client = httpclient.InferenceServerClient(server.url)
    frame = np.zeros((1, 16, 16, 3), np.uint8)
    bad = [("input", np.zeros((1, 16, 16, 4), np.uint8), "UINT8"),      # wrong shape (4 channels)
           ("input", frame.astype(np.float32), "FP32"),                  # wrong dtype
           ("frames", frame, "UINT8")]                                   # wrong input name
    for name, x, dtype in bad:
        i = httpclient.InferInput(name, list(x.shape), dtype)
        i.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException):
            client.infer("unet_frames", [i])
    host, port = server.url.split(":")

    def post(header: dict, body_size: int, sent: int) -> int | None:
        """A binary-tensor request of ``body_size`` bytes of which ``sent`` are sent; its HTTP status (None: closed)."""
        head = json.dumps(header).encode()
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.putrequest("POST", "/v2/models/unet_frames/infer")
        conn.putheader("Inference-Header-Content-Length", str(len(head)))
        conn.putheader("Content-Length", str(len(head) + body_size))
        conn.endheaders()
        try:
            conn.send(head)
            chunk = bytes(1 << 20)
            left = sent
            while left > 0:
                conn.send(chunk[:min(left, len(chunk))])
                left -= min(left, len(chunk))
            if sent < body_size:
                conn.sock.shutdown(socket.SHUT_WR)  # the truncated body: the connection ends early
            return conn.getresponse().status
        except (ConnectionError, http.client.HTTPException, OSError):
            return None
        finally:
            conn.close()

    side = 5900  # 5900×5900×3 bytes ≈ 104 MB
    header = {"inputs": [{"name": "input", "shape": [1, side, side, 3], "datatype": "UINT8",
                          "parameters": {"binary_data_size": side * side * 3}}]}
    assert post(header, side * side * 3, side * side * 3) in (400, 500)  # 100 MB body: over --max-request-mb
    small = {"inputs": [{"name": "input", "shape": [1, 64, 64, 3], "datatype": "UINT8",
                         "parameters": {"binary_data_size": 64 * 64 * 3}}]}
    assert post(small, 64 * 64 * 3, 1000) != 200                     # truncated body
    assert client.is_server_ready()
    assert infer(client, "unet_frames", frame).as_numpy("labels").shape == (1, 16, 16)
    client.close()


def test_burst_of_10000_requests(server, models):
    """10,000 requests in flight at once through gRPC's asynchronous client: each answered, each its own (~5 s)."""
    n = 10_000
    session = open_session(models / "unet_frames.onnx", threads=1)
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (64, 1, 8, 8, 3), np.uint8)  # 64 distinct frames, request i sends frame i % 64
    refs = [session.run(f)["labels"] for f in frames]
    results: dict[int, object] = {}
    done = threading.Event()
    lock = threading.Lock()
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def callback(i, result, error):
        with lock:
            results[i] = error if error is not None else result.as_numpy("labels")
            if len(results) == n:
                done.set()

    t0 = time.monotonic()
    for i in range(n):
        x = grpcclient.InferInput("input", [1, 8, 8, 3], "UINT8")
        x.set_data_from_numpy(frames[i % 64])
        client.async_infer("unet_frames", [x], lambda result, error, i=i: callback(i, result, error), request_id=str(i))
    assert done.wait(120), f"{n - len(results)} of {n} requests unanswered after {time.monotonic() - t0:.0f} s"
    errors = [r for r in results.values() if not isinstance(r, np.ndarray)]
    assert not errors, f"{len(errors)} errors, e.g. {errors[0]}"
    assert all(np.array_equal(results[i], refs[i % 64]) for i in range(n))
    client.close()
    assert httpclient.InferenceServerClient(server.url).is_server_ready()


def test_one_client_for_edgeseg_triton_and_serve(server, models, tmp_path):
    """The README's client runs against edgeseg serve; an edgeseg triton repository declares the same I/O."""
    served = (Path(server.repo) / "unet_frames" / "config.pbtxt").read_text()
    written = (write_triton_repository(models / "unet_frames.onnx", tmp_path, kind="cpu") / "config.pbtxt").read_text()
    io = lambda text: re.sub(r"\n(platform|backend): .*|\nparameters \{.*", "", text, flags=re.S)  # noqa: E731
    assert io(served) == io(written)
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(# client: edgeseg serve or an edgeseg triton repository.*?)```", readme, re.S).group(1)
    code = code.replace("localhost:8000", server.url).replace("unet_frames.png", str(tmp_path / "frame.png"))
    from PIL import Image

    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 60, 3), np.uint8)).save(tmp_path / "frame.png")
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["labels"].shape == (40, 60)


def test_sigterm_lets_requests_in_flight_finish(models):
    """edgeseg serve (the CLI) gets SIGTERM while 6 slow requests run: all 6 are answered, it exits 0."""
    http_port, grpc_port, metrics_port = free_ports(3)
    cmd = [sys.executable, "-m", "edgeseg", "serve", str(models / "unet_frames.onnx"), "--host", "127.0.0.1",
           "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
           "--exit-timeout", "20", "--max-batch", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    try:
        url = f"127.0.0.1:{http_port}"
        deadline = time.monotonic() + 120
        client = httpclient.InferenceServerClient(url, concurrency=6)
        while time.monotonic() < deadline:
            try:
                if client.is_server_ready():
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        frame = np.random.default_rng(4).integers(0, 256, (1, 720, 1280, 3), np.uint8)
        x = httpclient.InferInput("input", list(frame.shape), "UINT8")
        x.set_data_from_numpy(frame)
        pending = [client.async_infer("unet_frames", [x]) for _ in range(6)]  # ~0.1-0.3 s each, one at a time
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        labels = [p.get_result(timeout=60).as_numpy("labels") for p in pending]
        assert all(lab.shape == (1, 720, 1280) for lab in labels)
        client.close()  # Triton waits for open client connections too (up to --exit-timeout)
        assert proc.wait(60) == 0
        with pytest.raises(ConnectionError):
            socket.create_connection(("127.0.0.1", http_port), timeout=2).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_user_mistakes_are_one_line_errors(models, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} \\(--http-port\\)"):
            check_port("127.0.0.1", port, "--http-port")
        r = subprocess.run([sys.executable, "-m", "edgeseg", "serve", str(models / "unet.onnx"), "--host", "127.0.0.1",
                            "--http-port", str(port)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "in use" in r.stderr
    import importlib.metadata

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServeError, match="no tritonserver binary"):
        find_tritonserver()


def test_perf_analyzer_short_run_has_no_failures(server, tmp_path):
    """A few seconds of perf_analyzer at concurrency 4 (README, Serving: how build/perf_analyzer/ is made) through
    ``TritonServer.perf_analyzer``: its CSV read back, and the server's own counts show no failed request."""
    binary = ROOT / "build" / "perf_analyzer" / "perf_analyzer"
    if not binary.is_file():
        pytest.skip("perf_analyzer is not in build/perf_analyzer (README, Serving, says how to put it there)")
    point = server.perf_analyzer(binary, "unet_frames", "input:32,32,3", 4, tmp_path / "pa.csv", 1500, timeout_s=120)
    assert point["perf_analyzer_rc"] == 0, point.get("error")
    assert point["fail"] == 0 and point["success"] > 0 and point["inferences"] >= point["executions"] > 0, point
    assert point["throughput_ips"] > 0 and 0 < point["p50_ms"] <= point["p99_ms"], point
    assert point["concurrency"] == 4 and point["mean_batch"] >= 1, point
