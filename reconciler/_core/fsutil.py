"""Atomic, durable file writes: temp file in the same directory, fsync, rename, fsync dir."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from reconciler._core.errors import StorageFullError

# Our temp files start with this prefix so that watchers can ignore them.
TEMP_PREFIX = ".reconciler-tmp-"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_storage_full(exc: OSError) -> bool:
    return exc.errno in _NO_SPACE


def fsync_dir(directory: Path) -> None:
    """Make the renames and removals done in a directory durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: Path, data: bytes, *, exclusive: bool = False, mode: int = 0o644, sync_dir: bool = True
) -> None:
    """Write `data` to `path` so that readers see either the old or the new content.
    `sync_dir=False` leaves making the rename durable to the caller (fsync_dir), for a
    batch of writes in one directory.

    With `exclusive=True` an existing `path` is never replaced (FileExistsError), even if
    it appears between our check and the rename: the final step is a hard link, which
    fails when the target exists.

    Out of space or quota, it raises StorageFullError (an OSError) and `path` is unchanged.
    """
    try:
        _write_replace(path, data, exclusive=exclusive, mode=mode, sync_dir=sync_dir)
    except OSError as exc:
        if not is_storage_full(exc) or isinstance(exc, StorageFullError):
            raise
        raise StorageFullError(
            f"no space left to write {path} ({exc.strerror}); the file is unchanged: free "
            "some space on its file system and retry",
            exc.errno,
        ) from exc


def _write_replace(path: Path, data: bytes, *, exclusive: bool, mode: int, sync_dir: bool) -> None:
    directory = path.parent
    tmp = directory / f"{TEMP_PREFIX}{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
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
    if sync_dir:
        fsync_dir(directory)


class OutsideError(OSError):
    """A path that would lead out of the directory it must stay in."""


def check_inside(root: Path, rel: str) -> Path:
    """`root / rel`, after checking that it stays inside `root` component by component:
    no `..`, no absolute part, and no symlink on the way (an existing directory on the
    path, or the file itself). A link committed into a repository, or swapped in by
    someone else, would otherwise send a write somewhere else. Raises OutsideError."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(p in ("..", ".") for p in parts):
        raise OutsideError(errno.EINVAL, f'"{rel}" is not a path inside {root}')
    current = root
    for part in parts:
        current = current / part
        try:
            st = current.lstat()
        except FileNotFoundError:
            break  # what does not exist yet is made as a plain directory or file
        if stat.S_ISLNK(st.st_mode):
            raise OutsideError(
                errno.ELOOP, f"{current} is a symbolic link: nothing is written through it"
            )
    return root / rel


def is_inside_real(path: str, root: Path) -> bool:
    """The file open at `path` (resolved, links and all) lies inside `root` (resolved:
    the root itself may be a link, as with git-sync's swap)."""
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def private_dir(path: Path) -> None:
    """`path` as a directory only its owner can enter (0700), made if missing; an existing
    one is narrowed to 0700 too (the daemon's state and workspaces hold secrets)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)


def file_mode_like(path: Path, default: int = 0o644) -> int:
    """The permission bits a file written at `path` should have: its own when it exists,
    else those of a regular file beside it (the operator's choice for the directory),
    else `default`."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        pass
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                    return stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
    except OSError:
        pass
    return default


def durable_unlink(path: Path, *, sync_dir: bool = True) -> None:
    """Remove a file and make the removal durable (`sync_dir=False`: see atomic_write)."""
    os.unlink(path)
    if sync_dir:
        fsync_dir(path.parent)
