"""Budgets: how much an untrusted input may make edgeseg read, decode or allocate, checked before the work.

Every reader of a data-set or model file estimates what it is about to read or allocate from what it
has seen so far (a header, a JSON record, a metadata field) and calls ``check`` first. The defaults hold
any input under 1 MB to well under 2 GB of peak memory. Each budget is raised the same way: the
environment variable ``EDGESEG_MAX_<NAME>``, or, for the two a user meets most, the verbs' flags
``--max-pixels`` and ``--max-bytes`` (which win over the environment).
"""
from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from edgeseg.errors import DataError, EdgeSegError

DEFAULTS = {
    "pixels": 100_000_000,  # pixels of one image or frame, from its header
    "bytes": 1 << 30,  # memory one data set, one decode or one model run may take (images, masks, tensors)
    "json_bytes": 64 << 20,  # size of one JSON file (COCO val2017 instances: 25 MB)
    "json_depth": 32,  # nesting of JSON arrays and objects (COCO needs 5)
    "json_digits": 40,  # characters of one JSON number
    "polygon_points": 100_000,  # x,y points of one annotation's polygons
    "rle_counts": 1_000_000,  # runs of one annotation's RLE
    "annotations": 10_000,  # annotations on one image
    "images": 100_000,  # images in one data set
}
UNITS = {"pixels": "pixels", "bytes": "bytes", "json_bytes": "bytes", "json_depth": "levels", "json_digits": "characters",
         "polygon_points": "points", "rle_counts": "runs", "annotations": "annotations", "images": "images"}
_FLAGS = {"pixels": "--max-pixels", "bytes": "--max-bytes"}
_raised: dict[str, int] = {}  # set by the CLI from its flags, for the run of one verb


def env_name(name: str) -> str:
    return "EDGESEG_MAX_" + name.upper()


def set_limit(name: str, value: int | None) -> None:
    """A flag's value for budget ``name`` (None: back to the environment / default)."""
    if value is None:
        _raised.pop(name, None)
        return
    if value < 1:
        raise EdgeSegError(f"{_FLAGS.get(name, name)} must be positive, got {value}", f"pass e.g. {_FLAGS.get(name, name)} {DEFAULTS[name]}")
    _raised[name] = value


def limit(name: str, value: int | None = None) -> int:
    """Budget ``name``: ``value`` if given, else the flag's, else $EDGESEG_MAX_<NAME>, else the default."""
    if value is None:
        value = _raised.get(name)
    if value is None:
        env = os.environ.get(env_name(name), "").strip()
        try:
            value = int(env) if env else DEFAULTS[name]
        except ValueError:
            raise DataError(f"{env_name(name)}={env[:40]!r} is not an integer",
                            f"set it to a count, e.g. {env_name(name)}={DEFAULTS[name]}") from None
    if value < 1:
        raise DataError(f"the {name.replace('_', ' ')} limit must be positive, got {value}",
                        f"set {_FLAGS.get(name, env_name(name))} to e.g. {DEFAULTS[name]}")
    return value


def how_to_raise(name: str) -> str:
    flag = f"{_FLAGS[name]} / " if name in _FLAGS else ""
    return f"raise the limit with {flag}{env_name(name)} if you trust the input"


def check(name: str, amount: int, what: str, error: type[EdgeSegError] = DataError, value: int | None = None) -> None:
    """Refuse ``what`` (it would need ``amount`` of budget ``name``) in one line when over the budget."""
    allowed = limit(name, value)
    if amount > allowed:
        raise error(f"{what} needs {amount:,} {UNITS[name]}, over the limit of {allowed:,}", how_to_raise(name))


class Tally:
    """A running total against one budget: what a data set keeps in memory, image after image."""

    def __init__(self, name: str, what: str, error: type[EdgeSegError] = DataError):
        self.name, self.what, self.error, self.total = name, what, error, 0

    def add(self, amount: int, detail: str = "") -> None:
        self.total += amount
        check(self.name, self.total, self.what + (f" (up to {detail})" if detail else ""), self.error)


# ---------------------------------------------------------------- JSON with limits, before json.loads

# A JSON string (escapes included), replaced by "" so brackets and digits inside strings are not counted.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_CHUNK = 1 << 20


def _depth(bare: bytes) -> int:
    """The deepest nesting of [ and { in ``bare`` (strings removed), counted in chunks to bound memory."""
    import numpy as np

    level = peak = 0
    for start in range(0, len(bare), _CHUNK):
        a = np.frombuffer(bare, np.uint8, count=min(_CHUNK, len(bare) - start), offset=start)
        steps = (a == 91).astype(np.int32) + (a == 123) - (a == 93) - (a == 125)
        run = np.cumsum(steps) + level
        peak, level = max(peak, int(run.max())), int(run[-1])
    return peak


def read_json(path: str | Path, what: str, fix: str, error: type[EdgeSegError] = DataError):
    """Parse the JSON file ``path`` after checking its size, nesting and number lengths against their budgets:
    Python's parser recurses per level and converts long integers in quadratic time; neither is reached."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a device or FIFO has no size to check and may never end
            raise error(f"{what} {path} is not a regular file", fix)
        check("json_bytes", info.st_size, f"{what} {path}", error)
        with open(path, "rb") as f:
            raw = f.read(limit("json_bytes") + 1)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}", fix) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise error(f"{what} {path} cannot be read ({type(e).__name__})", fix) from None
    check("json_bytes", len(raw), f"{what} {path}", error)  # it grew since stat
    bare = _STRING.sub(b'""', raw)
    digits = limit("json_digits")
    long_number = re.search(rb"[-+.eE0-9]{%d,}" % (digits + 1), bare)
    if long_number:
        raise error(f"{what} {path} holds a number of more than {digits} characters at byte {long_number.start():,}",
                    f"fix the file; {how_to_raise('json_digits')}")
    check("json_depth", _depth(bare), f"{what} {path}: its nesting", error)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8
        raise error(f"{what} {path} is not valid JSON ({type(e).__name__})", fix) from None
