"""Atomic, durable file writes: temp file in the same directory, fsync, rename, fsync dir."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

# Our temp files start with this prefix so that watchers can ignore them.
TEMP_PREFIX = ".reconciler-tmp-"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False, mode: int = 0o644) -> None:
    """Write `data` to `path` so that readers see either the old or the new content.

    With `exclusive=True` an existing `path` is never replaced (FileExistsError), even if
    it appears between our check and the rename: the final step is a hard link, which
    fails when the target exists.
    """
    directory = path.parent
    tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def durable_unlink(path: Path) -> None:
    """Remove a file and make the removal durable."""
    os.unlink(path)
    _fsync_dir(path.parent)
