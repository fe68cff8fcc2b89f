"""``edgeseg serve``: a real Triton Inference Server around an edgeseg Session.

The server is the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships (or one on PATH, with its
``backends/`` beside ``bin/``). That build has the Python backend only, so the model is served through it:
``serve_model.py`` (copied as the model's ``model.py``) opens the model with ``open_session`` (ONNX Runtime on
the CPU for an .onnx, TensorRT for an engine) and runs each dynamic batch as one ``Session.run``. The config
is ``edgeseg.deploy.triton``'s, with ``backend: "python"`` in place of the platform, so requests and responses
are those of an ``edgeseg triton`` repository: same tensor names, dtypes and dims (uint8 frames and compact
outputs for deploy graphs).

The Python-backend stub is a separate process that embeds libpython through the dynamic linker. The wheel's
stub for 3.11 links ``libpython3.11.so.1.0`` by name, so it loaded the system's (Debian's 3.11.2) while its
``sys.path`` was this interpreter's (3.11.7): 3.11.7's ``multiprocessing`` then called
``_thread.RLock._recursion_count``, which 3.11.2's C core does not have. The server is therefore started with
``LD_LIBRARY_PATH`` on this interpreter's own shared libpython, and the model file adds this interpreter's
``sys.path`` (the stub ignores ``PYTHONPATH``): the stub runs exactly the Python that runs edgeseg.
"""
from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict
from pathlib import Path

from edgeseg.deploy.triton import DeployError, _engine_max_batch, _model_io, triton_config
from edgeseg.io import write_text_atomic


class ServeError(DeployError):
    """A server that cannot be started as asked (binary missing, port in use, model that does not load)."""


MODEL_FILE = Path(__file__).with_name("serve_model.py")
SETUP_HINT = "run scripts/setup.sh, or: pip install --no-deps nvidia-pytriton==0.7.0 (README, 'Serving')"


def find_tritonserver() -> tuple[Path, Path, Path]:
    """(tritonserver binary, folder holding the Python backend library, Python-backend stub for this Python)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        root = Path(str(importlib.metadata.distribution("nvidia-pytriton").locate_file("pytriton/tritonserver")))
        binary, backend = root / "bin" / "tritonserver", root / "backends" / "python"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    except importlib.metadata.PackageNotFoundError:
        found = shutil.which("tritonserver")
        if found is None:
            raise ServeError("no tritonserver binary found (nvidia-pytriton is not installed)", SETUP_HINT) from None
        binary = Path(found).resolve()
        backend = binary.parents[1] / "backends" / "python"
        stub = backend / "triton_python_backend_stub"  # a container's server: its stub is built for its own Python
    if not binary.is_file():
        raise ServeError(f"no tritonserver binary at {binary}", SETUP_HINT)
    if not (backend / "libtriton_python.so").is_file():
        raise ServeError(f"{backend} has no Triton Python backend", "install a server build with the Python backend")
    if not stub.is_file():
        raise ServeError(f"this tritonserver has no Python-backend stub for Python {version}",
                         "run edgeseg serve with a Python the server ships a stub for (3.8-3.13 for nvidia-pytriton 0.7)")
    return binary, backend, stub


def python_library() -> Path:
    """This interpreter's shared libpython, which the stub must embed (not another build of the same minor)."""
    name = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    for folder in (sysconfig.get_config_var("LIBDIR"), Path(sys.base_prefix) / "lib"):
        if folder and ".so" in name and (Path(folder) / name).is_file():  # a static build has a .a here
            return Path(folder) / name
    raise ServeError(f"this Python ({sys.executable}) has no shared libpython for Triton's Python-backend stub",
                     "use a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)")


def stub_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: its stubs embed this interpreter's libpython, standard library and packages."""
    env = dict(os.environ if base is None else base)
    lib = python_library()
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib.parent), env.get("LD_LIBRARY_PATH", "")) if p)
    # The stub ignores PYTHONPATH (it starts an isolated interpreter): serve_model.py adds these itself, as site
    # folders so that .pth files (editable installs) count, and checks it runs the same Python as this one.
    env["EDGESEG_SERVE_SYS_PATH"] = os.pathsep.join(p for p in sys.path if p and os.path.exists(p))
    env["EDGESEG_SERVE_PYTHON"] = sys.version
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (raw UTF-8 inside: text format has no \\u escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def write_serve_repository(model: str | Path, repo: str | Path, name: str | None = None, max_batch: int | None = None,
                           max_queue_delay_us: int = 100, instances: int = 1, dynamic_batching: bool = True,
                           threads: int | None = None, max_request_mb: float = 64) -> Path:
    """``repo/name`` serving ``model`` through the Python backend; returns the model folder. The model file is
    referenced, not copied (the server lives only as long as ``edgeseg serve``)."""
    model = Path(model).resolve()
    if not model.is_file():
        raise ServeError(f"not found: {model}", "pass an edgeseg .onnx or an engine from 'edgeseg build'")
    meta, io, platform, _ = _model_io(model)
    name = name or re.sub(r"[^A-Za-z0-9_.-]", "_", model.stem).lstrip(".")[:128] or "model"  # as edgeseg triton names it
    kind = "gpu" if platform == "tensorrt_plan" else "cpu"
    config = triton_config(name, meta, io, platform, max_batch, instances, kind, dynamic_batching,
                           max_queue_delay_us, _engine_max_batch(model))
    # The same I/O as 'edgeseg triton' writes; only the executor differs (this build has the Python backend only).
    config = config.replace(f"platform: {json.dumps(platform)}", 'backend: "python"', 1)
    threads = threads or max(1, (os.cpu_count() or 1) // instances)  # instances share the cores, not oversubscribe
    params = {"edgeseg_model": str(model), "edgeseg_backend": "tensorrt" if kind == "gpu" else "onnxruntime",
              "edgeseg_threads": str(threads), "edgeseg_max_request_bytes": str(int(max_request_mb * 1e6)),
              "edgeseg_meta": json.dumps(asdict(meta), ensure_ascii=False)}
    config += "".join(f"parameters {{\n  key: {_pbtxt_string(k)}\n  value: {{ string_value: {_pbtxt_string(v)} }}\n}}\n"
                      for k, v in params.items())
    folder = Path(repo) / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MODEL_FILE, folder / "1" / "model.py")
    write_text_atomic(folder / "edgeseg.json", json.dumps(asdict(meta), indent=2))
    write_text_atomic(folder / "config.pbtxt", config)
    return folder


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` different TCP ports free on ``host`` now, e.g. a server's HTTP, gRPC and metrics ports. Each is held
    until all are known, so the kernel cannot hand out one of them twice; another process may still take one
    before the server binds it."""
    socks = [socket.create_server((host, 0)) for _ in range(n)]
    try:
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def check_port(host: str, port: int, flag: str) -> None:
    if not 1 <= port <= 65535:
        raise ServeError(f"{flag} {port} is not a TCP port", "use 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free to a server
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServeError(f"port {port} ({flag}) on {host} is in use or not available: {e.strerror}",
                             f"stop what listens there or pass another {flag}") from None


class TritonServer:
    """A tritonserver process on ``repo`` (from ``write_serve_repository``). ``start()`` returns once every model
    is ready; ``stop()`` sends SIGTERM, on which Triton refuses new requests and finishes those in flight (for
    up to ``exit_timeout_s``)."""

    def __init__(self, repo: str | Path, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
                 host: str = "0.0.0.0", exit_timeout_s: int = 30, log: str | Path | None = None):
        self.repo, self.host = Path(repo), host
        self.http_port, self.grpc_port, self.metrics_port = http_port, grpc_port, metrics_port
        self.exit_timeout_s, self.log = exit_timeout_s, None if log is None else Path(log)
        self.process: subprocess.Popen | None = None
        self._work: tempfile.TemporaryDirectory | None = None
        self._log_start = 0

    @property
    def url(self) -> str:
        return f"{self._client_host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    def command(self) -> tuple[list[str], dict[str, str]]:
        binary, backend, stub = find_tritonserver()
        self._work = tempfile.TemporaryDirectory(prefix="edgeseg-serve-")
        # A private backend folder: the library, its utilities and the stub for this Python, side by side, as the
        # backend expects, without writing into the installed wheel.
        python = Path(self._work.name) / "backends" / "python"
        python.mkdir(parents=True)
        for source in (backend / "libtriton_python.so", backend / "triton_python_backend_utils.py", stub):
            (python / source.name).symlink_to(source)
        cmd = [str(binary), f"--model-repository={self.repo}", f"--backend-directory={python.parent}",
               f"--http-address={self.host}", f"--http-port={self.http_port}",
               f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
               f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
               "--disable-auto-complete-config", f"--exit-timeout-secs={self.exit_timeout_s}", "--log-verbose=0"]
        return cmd, stub_environment()

    def start(self, timeout_s: float = 180) -> TritonServer:
        for port, flag in ((self.http_port, "--http-port"), (self.grpc_port, "--grpc-port"),
                           (self.metrics_port, "--metrics-port")):
            check_port(self.host, port, flag)
        if len({self.http_port, self.grpc_port, self.metrics_port}) < 3:
            raise ServeError("the HTTP, gRPC and metrics ports must differ", "pass three different ports")
        cmd, env = self.command()
        out = None if self.log is None else open(self.log, "ab")
        self._log_start = 0 if out is None else out.tell()  # this run's part of an appended log
        try:
            self.process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                            stdin=subprocess.DEVNULL)
        finally:
            if out is not None:
                out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise ServeError(f"tritonserver exited with status {code} while loading the model{self._log_error()}",
                                 "see the server's log for the model's error")
            if self.ready():
                return self
            time.sleep(0.25)
        self.stop()
        raise ServeError(f"tritonserver was not ready within {timeout_s:.0f} s", "see the server log for what it waits on")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://{self.url}{path}", timeout=10) as r:
            return json.load(r)

    def version(self) -> str:
        """The running server's version (its ``/v2`` metadata), e.g. "2.51.0"."""
        return self._get("/v2")["version"]

    def stats(self, model: str) -> dict:
        """Triton's cumulative counters for ``model`` (``/v2/models/NAME/stats``), since it loaded: take the
        difference around what you measure. ``success`` and ``fail``: requests the model ran, and that the server
        failed to run; an error response from the model itself (an input over --max-request-mb, an empty frame)
        counts as a success, and a request Triton refuses for its shape or dtype in neither (Triton 2.51).
        ``inferences``: images (a request of N frames counts N); ``executions``: batches the model ran."""
        s = self._get(f"/v2/models/{urllib.parse.quote(model, safe='')}/stats")["model_stats"][0]
        return {"success": s["inference_stats"]["success"]["count"], "fail": s["inference_stats"]["fail"]["count"],
                "inferences": s["inference_count"], "executions": s["execution_count"]}

    def perf_analyzer(self, binary: str | Path, model: str, shape: str, concurrency: int, csv_file: str | Path,
                      interval_ms: int = 2000, window_requests: int | None = None, timeout_s: float = 300) -> dict:
        """One measurement of ``model`` on this server by perf_analyzer, Triton's load generator (``binary``, with
        the libraries it needs in ``lib/`` beside it: README, Serving). ``concurrency`` requests in flight over HTTP,
        inputs of ``shape`` ("input:256,256,3"); 3 windows of ``interval_ms``, or with ``window_requests`` of that
        many requests each (for a model whose batch outlasts a time window); the stability check loosened (-s 100
        -r 5) so that a loaded machine cannot make it give up. Returns the server's counts over the run (``stats``
        differences), ``concurrency``, ``perf_analyzer_rc`` and, where it ran, from its CSV: ``throughput_ips``, the
        client's ``p50_ms`` / ``p99_ms``, the server's mean ``server_infer_ms`` / ``server_queue_ms``, and
        ``mean_batch``; where it failed, ``error`` (its output's end)."""
        binary = Path(binary)
        cmd = [str(binary), "-m", model, "-u", self.url, "--concurrency-range", str(concurrency), "--shape", shape,
               "-p", str(interval_ms), "-s", "100", "-r", "5", "-f", str(csv_file)]
        if window_requests:
            cmd += ["--measurement-mode", "count_windows", "--measurement-request-count", str(window_requests)]
        before = self.stats(model)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                           env={**os.environ, "LD_LIBRARY_PATH": str(binary.parent / "lib")})
        after = self.stats(model)
        row = {k: after[k] - before[k] for k in after} | {"concurrency": concurrency, "perf_analyzer_rc": r.returncode}
        if r.returncode != 0:
            return row | {"error": (r.stdout + r.stderr)[-500:]}
        with open(csv_file, newline="") as f:
            line = next(csv.DictReader(f))  # latencies in µs
        row |= {"throughput_ips": float(line["Inferences/Second"]), "p50_ms": int(line["p50 latency"]) / 1e3,
                "p99_ms": int(line["p99 latency"]) / 1e3, "server_infer_ms": int(line["Server Compute Infer"]) / 1e3,
                "server_queue_ms": int(line["Server Queue"]) / 1e3}
        return row | {"mean_batch": row["inferences"] / max(1, row["executions"])}

    def _log_error(self) -> str:
        """': <the log's first error line>' where the log went to a file (else it is on the terminal)."""
        if self.log is None or not self.log.is_file():
            return ""
        with open(self.log, "rb") as f:
            f.seek(self._log_start)
            lines = f.read().decode(errors="replace").splitlines()
        lines = [ln for ln in lines if "failed" in ln.lower() and "NVML" not in ln]
        return f": {lines[0].split(chr(92) + 'n')[0][:300]}" if lines else ""  # up to the traceback's first \n

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, wait for in-flight requests (``exit_timeout_s``), then SIGKILL as a last resort."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout_s if timeout_s is not None else self.exit_timeout_s + 15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait()
        if self._work is not None:
            self._work.cleanup()
            self._work = None
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model: str | Path, http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002,
          host: str = "0.0.0.0", max_batch: int | None = None, max_queue_delay_us: int = 100, instances: int = 1,
          dynamic_batching: bool = True, name: str | None = None, exit_timeout_s: int = 30,
          max_request_mb: float = 64) -> int:
    """Serve ``model`` until SIGTERM or SIGINT, which are passed on to the server (in-flight requests finish);
    returns the server's exit status."""
    find_tritonserver()  # refuse early, before writing anything
    with tempfile.TemporaryDirectory(prefix="edgeseg-repo-") as repo:
        folder = write_serve_repository(model, repo, name, max_batch, max_queue_delay_us, instances, dynamic_batching,
                                        max_request_mb=max_request_mb)
        server = TritonServer(repo, http_port, grpc_port, metrics_port, host, exit_timeout_s)

        def forward(signum, frame):  # one SIGTERM to the server, whichever signal reached us
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.start()
            print(f"edgeseg serve: model '{folder.name}' ready: HTTP {server.url}, gRPC {server.grpc_url}, "
                  f"metrics http://{server._client_host}:{metrics_port}/metrics", flush=True)
            code = server.process.wait()
        finally:
            server.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
    return code


__all__ = ["ServeError", "TritonServer", "find_tritonserver", "free_ports", "serve", "stub_environment",
           "write_serve_repository"]
