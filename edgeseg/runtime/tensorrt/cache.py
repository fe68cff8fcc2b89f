"""The engine cache: one built engine per key, shared by every process of a machine.

A TensorRT engine is only valid for the ONNX bytes, TensorRT version, GPU (name and compute capability),
precision, shape profile, builder options and plugin libraries it was built with; :class:`EngineKey`
holds all of them and hashes them to a stable hex digest, the file name of the engine in the cache.

``get_or_build`` builds an engine at most once per key: the build runs under an exclusive ``fcntl.flock``
on ``<digest>.lock``, a process that waited for the lock finds the engine and uses it, and an engine (and
its ``.json`` sidecar) appear in the cache only by rename, complete. So no two processes build the same
engine at once and none reads half an engine. Pure Python, no TensorRT: tested on every machine.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgeseg.errors import BackendError
from edgeseg.io import atomic_path

CACHE_ENV = "EDGESEG_ENGINE_CACHE"
KEY_VERSION = 1  # bump when the key's fields or their meaning change: old engines are then never matched


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


Shape = tuple[int, ...]


@dataclass(frozen=True)
class ShapeProfile:
    """One input's optimization profile: the smallest, the tuned-for and the largest shape."""

    name: str
    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise BackendError(f"the shapes of input '{self.name}' differ in rank: {self.min}, {self.opt}, {self.max}",
                               "give min, opt and max shapes of one rank")
        for lo, mid, hi in zip(self.min, self.opt, self.max):
            if not (0 < lo <= mid <= hi):
                raise BackendError(f"input '{self.name}': shapes {self.min} <= {self.opt} <= {self.max} do not hold "
                                   "dimension by dimension (or a dimension is not positive)",
                                   "order them min <= opt <= max, every dimension at least 1")

    @property
    def fixed(self) -> bool:
        return self.min == self.opt == self.max


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on. ``digest`` is stable across processes, machines and Python versions
    (sha256 of canonical JSON), so it names the engine file."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: tuple[int, int]
    precision: str
    shapes: tuple[ShapeProfile, ...]
    plugin_sha256: tuple[str, ...] = ()
    # Builder options that change the engine (version/hardware compatibility, DLA core, optimization level),
    # as sorted (name, value) pairs; the workspace and timing cache only change build time, not validity.
    options: tuple[tuple[str, str], ...] = field(default=())

    def canonical(self) -> str:
        record = {"key_version": KEY_VERSION, **asdict(self)}
        return json.dumps(record, sort_keys=True, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return sha256_bytes(self.canonical().encode())


def cache_dir(folder: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``folder``, else ``$EDGESEG_ENGINE_CACHE``, else ``~/.cache/edgeseg/engines``."""
    if folder is not None:
        return Path(folder)
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "edgeseg" / "engines"


def engine_path(key: EngineKey, folder: str | os.PathLike | None = None) -> Path:
    return cache_dir(folder) / f"{key.digest}.engine"


def _usable(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def get_or_build(key: EngineKey, build_fn: Callable[[Path], object], folder: str | os.PathLike | None = None) -> Path:
    """The cached engine for ``key``, built by ``build_fn(tmp)`` if absent.

    ``build_fn`` writes the engine to the temporary path it is given (and may write a sidecar at
    ``<tmp>.json``); both are renamed into the cache when it returns, the sidecar first, so an engine in the
    cache always has its sidecar. If ``build_fn`` raises, nothing is left in the cache and the next caller
    builds again. The key is recorded in ``<digest>.key.json`` for people looking at the folder."""
    folder = cache_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{key.digest}.engine"
    if _usable(final):  # an engine appears only by rename, so one that is there is whole
        return final
    with open(folder / f"{key.digest}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        try:
            if _usable(final):  # built by the process we waited for
                return final
            with atomic_path(final) as tmp:
                sidecar_tmp = Path(str(tmp) + ".json")
                try:
                    build_fn(tmp)
                    if not _usable(tmp):
                        raise BackendError(f"the engine build for {final.name} wrote no engine",
                                           "see the TensorRT log above; the cache holds nothing for this key")
                    if sidecar_tmp.exists():
                        os.replace(sidecar_tmp, str(final) + ".json")
                    with atomic_path(folder / f"{key.digest}.key.json") as key_tmp:
                        key_tmp.write_text(json.dumps(json.loads(key.canonical()), indent=2))
                finally:
                    if sidecar_tmp.exists():
                        sidecar_tmp.unlink()
            return final
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
