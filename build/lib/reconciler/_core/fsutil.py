"""Atomic, durable file writes: temp file in the same directory, fsync, rename, fsync dir."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from reconciler._core.errors import StorageFullError

# Our temp files start with this prefix so that watchers can ignore them.
TEMP_PREFIX = ".reconciler-tmp-"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_storage_full(exc: OSError) -> bool:
    return exc.errno in _NO_SPACE


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

    Out of space or quota, it raises StorageFullError (an OSError) and `path` is unchanged.
    """
    try:
        _write_replace(path, data, exclusive=exclusive, mode=mode)
    except OSError as exc:
        if not is_storage_full(exc) or isinstance(exc, StorageFullError):
            raise
        raise StorageFullError(
            f"no space left to write {path} ({exc.strerror}); the file is unchanged: free "
            "some space on its file system and retry",
            exc.errno,
        ) from exc


def _write_replace(path: Path, data: bytes, *, exclusive: bool, mode: int) -> None:
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
