"""Atomic file writes: an interrupted write never leaves a half file where a good one is expected.

The temporary file is removed on any exception, KeyboardInterrupt or SystemExit (the CLI turns SIGTERM
into SystemExit, so ``kill`` cleans up like Ctrl-C). The final file gets the permissions the umask
gives any new file, not mkstemp's private 0600.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from edgeseg.errors import EdgeSegError


def check_writable_folder(path: str | os.PathLike) -> None:
    """Refuse, in one line, a path whose folder cannot exist because an ancestor is a regular file."""
    path = Path(path)
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise EdgeSegError(f"cannot write {path}: {ancestor} is a file, not a folder",
                                   "choose an output path inside a folder")
            return


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    A caller that moves the temporary file elsewhere itself (e.g. to keep a failed result under
    another name) leaves nothing to rename."""
    path = Path(path)
    check_writable_folder(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_plain_name(name: str, flag: str) -> str:
    """Refuse an output name that is not a plain file name (separators, '..', a leading dot, NUL): every
    output lands inside the folder the user named."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"(?!\.)[^/\\\0]{1,128}", name):
        raise EdgeSegError(f"{flag} {str(name)[:60]!r} is not a plain file name",
                           f"pass {flag} as 1-128 characters without '/', '\\' or a leading '.'")
    return name
