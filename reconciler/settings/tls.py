"""The API server's TLS context, built from the top-level `tls` block as CTS reads it.

Built once at load to report unreadable files with the setting that names them, and again
by the daemon when it starts serving (an `ssl.SSLContext` cannot be pickled, so it is never
kept in the settings).
"""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

from reconciler.settings.model import TLSSettings


class TLSFileError(Exception):
    """A file named by the `tls` block cannot be used; `setting` says which key named it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting
        self.message = message


def _kind(path: Path) -> str | None:
    """ "file", "directory", "other", or None when it does not exist; an unusable path
    (too long, a component that is a file) is reported as not existing, with the reason."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"error: {exc.strerror or exc}"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "directory" if stat.S_ISDIR(st.st_mode) else "other"


def missing_files(tls: TLSSettings) -> Iterator[TLSFileError]:
    """Every configured path that does not exist or has the wrong type."""
    wanted = [
        ("cert", tls.cert, "file"),
        ("key", tls.key, "file"),
        ("ca_cert", tls.ca_cert, "file"),
    ]
    wanted.append(("ca_path", tls.ca_path, "directory"))
    for setting, path, kind in wanted:
        if path is None:
            continue
        found = _kind(path)
        if found == kind:
            continue
        if found is None:
            what = "does not exist"
        elif found.startswith("error: "):
            what = f"cannot be read ({found.removeprefix('error: ')})"
        else:
            what = f"is not a {kind}"
        yield TLSFileError(setting, f'{setting} "{path}" {what}')


def ca_files(directory: Path) -> list[Path]:
    """Every regular file under `directory`, as CTS's ca_path reads it (go-rootcerts): PEM
    files of any name, not OpenSSL's hashed-name directory layout."""
    found: list[Path] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(Path(root, name) for name in sorted(files))
    return [path for path in found if path.is_file()]


def server_context(tls: TLSSettings) -> ssl.SSLContext:
    """A server-side context: the certificate chain, and with `verify_incoming` a required,
    verified client certificate signed by `ca_cert` (or, without it, any CA in `ca_path`).

    Raises TLSFileError naming the setting whose file is unusable."""
    assert tls.cert is not None and tls.key is not None, "checked when the settings loaded"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # as Go's crypto/tls server default
    try:
        ctx.load_cert_chain(tls.cert, tls.key)
    except (ssl.SSLError, OSError) as exc:
        raise TLSFileError(
            "cert", f'cannot load cert "{tls.cert}" with key "{tls.key}": {_reason(exc)}'
        ) from None
    if not tls.verify_incoming:
        return ctx
    ctx.verify_mode = ssl.CERT_REQUIRED
    if tls.ca_cert is not None:
        _load_ca(ctx, "ca_cert", tls.ca_cert)
    elif tls.ca_path is not None:
        files = ca_files(tls.ca_path)
        if not files:
            raise TLSFileError("ca_path", f'ca_path "{tls.ca_path}" holds no files')
        for path in files:
            _load_ca(ctx, "ca_path", path)
    return ctx


def _load_ca(ctx: ssl.SSLContext, setting: str, path: Path) -> None:
    try:
        ctx.load_verify_locations(cafile=path)
    except (ssl.SSLError, OSError) as exc:
        raise TLSFileError(
            setting, f'cannot load CA certificates from "{path}": {_reason(exc)}'
        ) from None


def _reason(exc: ssl.SSLError | OSError) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    return exc.strerror or str(exc)
