"""The engine cache, with real files and real processes (no TensorRT needed: a build is any function that
writes the engine file)."""
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeseg.errors import BackendError
from edgeseg.runtime.tensorrt.cache import CACHE_ENV, EngineKey, ShapeProfile, cache_dir, get_or_build

ROOT = Path(__file__).resolve().parents[1]


def _key(**changes) -> EngineKey:
    fields = dict(onnx_sha256="ab" * 32, tensorrt_version="10.16.1.11", gpu_name="NVIDIA H200", compute_capability=(9, 0),
                  precision="fp16", shapes=(ShapeProfile("input", (1, 3, 256, 256), (1, 3, 512, 512), (4, 3, 1024, 1024)),),
                  plugin_sha256=("cd" * 32,), options=(("dla_core", "-1"),))
    fields.update(changes)
    return EngineKey(**fields)


def test_digest_is_stable_across_processes_and_changes_with_every_field():
    key = _key()
    code = ("from edgeseg.runtime.tensorrt.cache import EngineKey, ShapeProfile;"
            "print(EngineKey('ab'*32, '10.16.1.11', 'NVIDIA H200', (9, 0), 'fp16',"
            "(ShapeProfile('input', (1, 3, 256, 256), (1, 3, 512, 512), (4, 3, 1024, 1024)),), ('cd'*32,),"
            "(('dla_core', '-1'),)).digest)")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert other == key.digest and len(key.digest) == 64
    variants = [_key(onnx_sha256="ef" * 32), _key(tensorrt_version="10.3.0.30"), _key(gpu_name="Orin"),
                _key(compute_capability=(8, 7)), _key(precision="int8"),
                _key(shapes=(ShapeProfile("input", (1, 3, 256, 256), (1, 3, 512, 512), (8, 3, 1024, 1024)),)),
                _key(plugin_sha256=()), _key(options=(("dla_core", "0"),))]
    assert len({v.digest for v in variants} | {key.digest}) == len(variants) + 1


def test_shape_profile_refuses_unordered_shapes():
    with pytest.raises(BackendError, match="min <= opt <= max"):
        ShapeProfile("input", (1, 3, 512, 512), (1, 3, 256, 256), (1, 3, 1024, 1024))
    with pytest.raises(BackendError, match="rank"):
        ShapeProfile("input", (1, 3, 512), (1, 3, 512, 512), (1, 3, 512, 512))


def test_cache_folder_default_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_dir() == Path.home() / ".cache" / "edgeseg" / "engines"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert cache_dir(tmp_path / "x") == tmp_path / "x"


def test_build_once_then_hit_and_sidecar_travels(tmp_path):
    calls = []

    def build(tmp: Path):
        calls.append(tmp)
        tmp.write_bytes(b"engine bytes")
        Path(str(tmp) + ".json").write_text('{"precision": "fp16"}')

    path = get_or_build(_key(), build, tmp_path)
    assert path == tmp_path / f"{_key().digest}.engine" and path.read_bytes() == b"engine bytes"
    assert Path(str(path) + ".json").read_text() == '{"precision": "fp16"}'
    assert get_or_build(_key(), build, tmp_path) == path and len(calls) == 1
    assert '"gpu_name": "NVIDIA H200"' in (tmp_path / f"{_key().digest}.key.json").read_text()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_failed_build_leaves_nothing_and_the_next_call_builds(tmp_path):
    def broken(tmp: Path):
        tmp.write_bytes(b"half an eng")
        Path(str(tmp) + ".json").write_text("{}")
        raise RuntimeError("builder crashed")

    with pytest.raises(RuntimeError):
        get_or_build(_key(), broken, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{_key().digest}.lock"]
    with pytest.raises(BackendError, match="wrote no engine"):
        get_or_build(_key(), lambda tmp: None, tmp_path)
    assert get_or_build(_key(), lambda tmp: tmp.write_bytes(b"ok"), tmp_path).read_bytes() == b"ok"


def _racer(folder: str, log: str, barrier, results) -> None:
    def build(tmp: Path):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)  # long enough that the other process is at the lock while this one builds
        with open(tmp, "wb") as f:
            f.write(b"x" * 100_000)

    barrier.wait()
    path = get_or_build(_key(), build, folder)
    results.put((os.getpid(), str(path), path.stat().st_size))


def test_two_processes_racing_on_one_key_build_once(tmp_path):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    log = tmp_path / "builds.log"
    procs = [ctx.Process(target=_racer, args=(str(tmp_path / "cache"), str(log), barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    got = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(log.read_text().split()) == 1  # exactly one build ran
    assert {(path, size) for _pid, path, size in got} == {(str(tmp_path / "cache" / f"{_key().digest}.engine"), 100_000)}
