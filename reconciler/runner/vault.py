"""Vault for `{{ with secret "path" }}` templates: the daemon's `vault` block resolved into
settings, and the client that reads secrets with them.

CTS hands its `vault` block to hcat, which reads a secret through Vault's Go client; this
module does what that chain does on the wire, so that a template written for CTS reads the
same secret here:

- KV v2 is detected per mount with `GET /v1/sys/internal/ui/mounts/<path>` and a path that
  lacks `data/` after the mount gets it (hcat vault_common.go isKVv2 and shimKVv2Path), so
  `secret "secret/aws"` and `secret "secret/data/aws"` both read `secret/data/aws` and
  `.Data.data.key` works on either.
- The value handed to the template is the answer's `data` object, as hcat's `.Data`: for
  KV v2 that is `{"data": {...}, "metadata": {...}}`, for KV v1 the fields themselves.
- `X-Vault-Token` and `X-Vault-Namespace` go with every request; 5xx, 412 and 429 answers
  and failed connections are retried as Vault's Go client retries them (twice, linear
  back-off with jitter), within one timeout per request (VAULT_CLIENT_TIMEOUT, 60 s).

No secret value and no token ever goes into an exception message or a log line: errors
name the path, the status and Vault's own `errors` list, nothing from a secret's body.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import random
import re
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import httpx2

from reconciler._core.errors import ReconcilerError
from reconciler._core.goclient import client_ssl_context, keepalive_options
from reconciler.settings.vault import (
    VaultBase,
    VaultConfigError,
    VaultSettings,
    vault_base,
)
from reconciler.taskfiles.durations import format_duration

log = logging.getLogger("reconciler.vault")

# Vault's Go client back-off (retryablehttp.LinearJitterBackoff, MinRetryWait 1 s,
# MaxRetryWait 1.5 s): attempt n waits n times a random time between the two.
DEFAULT_RETRY_WAIT = (1.0, 1.5)
# Go's http.Transport keeps two idle connections per host when MaxIdleConnsPerHost is zero.
_GO_IDLE_PER_HOST = 2


class VaultError(ReconcilerError):
    """A secret that cannot be read now. The message names the path, the status and
    Vault's `errors`; never the token, never anything from a secret."""

    reason = "VaultFailed"


class JSONNumber(str):
    """A JSON number with a fraction or an exponent, kept as written. Vault's Go client
    decodes numbers as json.Number, so `{{ .Data.data.ratio }}` prints the literal the
    secret holds ("0.10", "1e3"), which a float would not."""


# --- the client ---------------------------------------------------------------------------


def ssl_context(settings: VaultSettings) -> ssl.SSLContext:
    """The `tls` block as hcat uses it; with `enabled = false`, Go's defaults."""
    t = settings.tls
    if not t.enabled:
        return ssl.create_default_context()
    try:
        return client_ssl_context(
            ca_cert=t.ca_cert, ca_path=t.ca_path, cert=t.cert, key=t.key, verify=t.verify
        )
    except (OSError, ssl.SSLError) as err:
        raise VaultConfigError(f"vault.tls: {err}") from None


def _http_client(settings: VaultSettings, base: VaultBase) -> httpx2.AsyncClient:
    t = settings.transport
    connect: float | None = t.dial_timeout if t.dial_timeout > 0 else None
    if connect is not None and base.https and t.tls_handshake_timeout > 0:
        connect += t.tls_handshake_timeout  # httpcore counts the handshake in connect
    per_host = t.max_idle_conns_per_host or _GO_IDLE_PER_HOST
    idle = min(per_host, t.max_idle_conns) if t.max_idle_conns > 0 else per_host
    limits = httpx2.Limits(
        max_connections=None,
        max_keepalive_connections=0 if t.disable_keep_alives else idle,
        keepalive_expiry=t.idle_conn_timeout if t.idle_conn_timeout > 0 else None,
    )
    transport = httpx2.AsyncHTTPTransport(
        verify=ssl_context(settings) if base.https else True,
        limits=limits,
        uds=base.uds,
        socket_options=keepalive_options(t.dial_keep_alive),
        proxy=settings.proxy,
        trust_env=False,  # the proxy was chosen from the daemon's environment already
    )
    headers = {"X-Vault-Request": "true"}
    if settings.namespace:
        headers["X-Vault-Namespace"] = settings.namespace
    return httpx2.AsyncClient(
        base_url=base.url,
        headers=headers,
        transport=transport,
        timeout=httpx2.Timeout(settings.timeout, connect=connect, pool=None),
        # A standby node redirects to the active one; Vault's client follows (twice at
        # most) and sends the token along, as this does.
        follow_redirects=True,
        max_redirects=2,
        trust_env=False,
    )


@dataclass
class _Answer:
    status: int
    body: Any  # the JSON answer, None when there is none or it is not JSON

    def errors(self) -> str:
        """Vault's own `errors` (messages about the request, never a secret's content)."""
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)
        return ""

    def warnings(self) -> str:
        warnings = self.body.get("warnings") if isinstance(self.body, dict) else None
        if isinstance(warnings, list) and warnings:
            return "; ".join(str(w) for w in warnings)
        return ""

    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None


def _reason(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _retryable_status(status: int) -> bool:
    """retryablehttp.DefaultRetryPolicy (429, 5xx but 501) plus Vault's 412 (a standby
    that has not caught up with a write yet)."""
    return status in (412, 429) or (status >= 500 and status != 501)


def _retryable_error(err: httpx2.TransportError) -> bool:
    """Connection failures are retried, an untrusted certificate is not (retryablehttp)."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return False
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" not in str(err)


def _split(path: str) -> tuple[str, list[tuple[str, str]]]:
    """NewVaultReadQuery: spaces and slashes trimmed, a query (`?version=2`) kept apart."""
    text = path.strip().strip("/")
    if not text:
        raise VaultError(f'vault.read: invalid path "{path}"')
    try:
        url = urlsplit(text)
    except ValueError:  # an unclosed "[" in what would be a host
        raise VaultError(f'vault.read: invalid path "{path}"') from None
    raw = unquote(url.path).strip("/")
    if not raw:
        raise VaultError(f'vault.read: invalid path "{path}"')
    if any(part in (".", "..") for part in raw.split("/")) or url.scheme or url.netloc:
        # An HTTP client resolves dot segments: "../sys/raw" would read /sys/raw, outside
        # the API, with the daemon's token.
        raise VaultError(f'vault.read: invalid path "{path}": "." and ".." are not allowed')
    return raw, parse_qsl(url.query, keep_blank_values=True)


def shim_kv2_path(raw: str, mount: str) -> str:
    """hcat vault_common.go shimKVv2Path: `data/` goes in after the mount unless the path
    already has `data/` or `metadata/` there; the mount alone reads `<mount>/data`."""
    if raw in (mount, mount.rstrip("/")):
        return mount.rstrip("/") + "/data"
    rest = raw.removeprefix(mount)
    if rest.startswith(("data/", "metadata/")):
        return raw
    return mount.rstrip("/") + "/data/" + rest.lstrip("/")


def _deleted(data: Any, *, now: datetime | None = None) -> str:
    """hcat deletedKVv2: a KV v2 version whose metadata says it is gone. Unlike hcat, a
    deletion_time still to come (a mount with delete_version_after sets one on every live
    version) is not a deletion; a time that does not parse is, as in hcat."""
    metadata = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(metadata, dict):
        return ""
    if metadata.get("destroyed") is True:
        return "this version was destroyed"
    when = metadata.get("deletion_time")
    if not isinstance(when, str) or not when:
        return ""
    at = _rfc3339(when)
    if at is not None and at > (now or datetime.now(UTC)):
        return ""
    return f"this version was deleted at {when}"


def _rfc3339(text: str) -> datetime | None:
    """Vault's times carry nanoseconds, which datetime does not take: cut to micro."""
    m = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text.strip())
    if m is None:
        return None
    frac = (m.group(2) or "")[:7]
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        at = datetime.fromisoformat(m.group(1) + frac + zone)
    except ValueError:
        return None
    return at


_PATH_SAFE = "/:@!$&'()*+,;=-._~"


class VaultClient:
    """Reads secrets as hcat does, for one Vault and one namespace. The mounts it has met
    are remembered until `forget_mounts` (the daemon calls it on a reload, which is when
    a remounted or upgraded (v1 to v2) engine is seen again).

    `retry_wait` is (min, max) seconds of the linear back-off; `sleep` waits it (tests
    pass something quicker)."""

    def __init__(
        self,
        settings: VaultSettings,
        *,
        retry_wait: tuple[float, float] = DEFAULT_RETRY_WAIT,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._base = vault_base(settings)
        self._retry_wait = retry_wait
        self._sleep = sleep
        self._http = _http_client(settings, self._base)
        # tls.server_name: the name sent as SNI and checked against the certificate.
        self._extensions: dict[str, Any] = (
            {"sni_hostname": settings.tls.server_name}
            if self._base.https and settings.tls.enabled and settings.tls.server_name
            else {}
        )
        self._mounts: dict[str, bool] = {}  # mount path ("secret/") -> is KV v2
        self._unwrapped: tuple[str, str] | None = None  # (wrapping token, its token)
        self._unwrap_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"VaultClient({self.settings.address!r}, namespace={self.settings.namespace!r})"

    async def __aenter__(self) -> VaultClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def forget_mounts(self) -> None:
        self._mounts.clear()

    @property
    def mounts(self) -> Mapping[str, bool]:
        """The mounts met so far: path -> KV v2 (for tests and diagnostics)."""
        return dict(self._mounts)

    async def read(self, path: str) -> dict[str, Any]:
        """The `.Data` of the secret at `path` (a template's `secret "path"`): for a KV v2
        mount `{"data": {...}, "metadata": {...}}`, whether or not the path says `data/`;
        for KV v1 and other engines the answer's data as it is. Raises VaultError."""
        raw, query = _split(path)
        version = next((v for k, v in query if k == "version"), None)
        what = f"vault.read({raw}.v{version})" if version else f"vault.read({raw})"
        token = await self._token(what)
        secret_path, unidentified = await self._secret_path(raw, token, what)
        answer = await self._get(f"/v1/{secret_path}", token, what, params=query)
        data = answer.data()
        gone = _deleted(data)
        if answer.status == 200 and isinstance(data, dict) and not gone:
            return data
        if answer.status in (200, 204, 404):
            why = f"{what}: no secret exists at {secret_path}"
            why += f" ({gone})" if gone else f" ({_reason(answer.status)})"
            if errors := answer.errors():
                why += f": {errors}"  # "no handler for route": no engine is mounted there
            if warnings := answer.warnings():
                why += f"; Vault warns: {warnings}"
        else:
            why = self._refusal(what, "GET", secret_path, answer, token=bool(token))
        if unidentified:
            why += f"; {unidentified}"
        raise VaultError(why)

    # --- internals ------------------------------------------------------------------------

    def _refusal(self, what: str, method: str, path: str, answer: _Answer, *, token: bool) -> str:
        why = f"{what}: {method} {path}: Vault answered {_reason(answer.status)}"
        if errors := answer.errors():
            why += f": {errors}"
        if answer.status == 403:
            why += " (check the token's policies" if token else " (no token was sent"
            if self.settings.namespace:
                why += f', in namespace "{self.settings.namespace}"'
            why += ")"
        return why

    async def _token(self, what: str) -> str:
        """The token of this read: the agent's file (re-read each time), `token` or
        VAULT_TOKEN, else ~/.vault-token; unwrapped first when unwrap_token is set."""
        s = self.settings
        token = s.token
        if s.agent_token_file:
            try:
                token = await asyncio.to_thread(_read_token, s.agent_token_file)
            except OSError as exc:
                raise VaultError(
                    f'{what}: vault_agent_token_file "{s.agent_token_file}": '
                    f"{exc.strerror or type(exc).__name__}"
                ) from None
        elif not token and s.home_token_file:
            try:
                token = await asyncio.to_thread(_read_token, s.home_token_file)
            except OSError:
                token = ""
        if not s.unwrap_token or not token:
            return token
        async with self._unwrap_lock:
            if self._unwrapped is not None and self._unwrapped[0] == token:
                return self._unwrapped[1]
            client_token = await self._unwrap(token)
            self._unwrapped = (token, client_token)
            return client_token

    async def _unwrap(self, wrapping: str) -> str:
        """hcat CreateVaultClient with UnwrapToken: PUT sys/wrapping/unwrap with the
        wrapping token; the answer's auth.client_token is the token from then on."""
        what = "vault unwrap_token"
        answer = await self._request("PUT", "/v1/sys/wrapping/unwrap", wrapping, what)
        if answer.status != 200:
            raise VaultError(self._refusal(what, "PUT", "sys/wrapping/unwrap", answer, token=True))
        auth = answer.body.get("auth") if isinstance(answer.body, dict) else None
        client_token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(client_token, str) or not client_token:
            raise VaultError(f"{what}: Vault unwrapped the token but returned no token")
        return client_token

    async def _secret_path(self, raw: str, token: str, what: str) -> tuple[str, str]:
        """The path to read, and why the mount could not be identified ("" when it was).

        hcat vault_read.go readSecret / vault_common.go isKVv2: ask
        sys/internal/ui/mounts/<path>; a KV mount with options.version "2" gets the shim;
        anything else, and any refusal (404 from an old Vault, 403 without a token or with
        a policy that does not allow it, a 5xx after the retries), reads the path as
        written. Unlike hcat, a refusal is not remembered: the next read asks again.
        """
        mount = self._known_mount(raw)
        if mount is not None:
            return (shim_kv2_path(raw, mount) if self._mounts[mount] else raw), ""
        # Vault not answering here raises: the read would fail the same way, after as many
        # retries again (hcat makes it anyway).
        answer = await self._get(f"/v1/sys/internal/ui/mounts/{raw}", token, what)
        data = answer.data()
        if answer.status == 404:
            return raw, ""  # a Vault older than this endpoint: KV v1 (hcat)
        if answer.status != 200 or not isinstance(data, dict):
            if answer.status == 200:
                return raw, "its mount could not be identified: Vault's answer has no data"
            why = f"sys/internal/ui/mounts answered {_reason(answer.status)}"
            if errors := answer.errors():
                why += f": {errors}"
            return raw, f"its mount could not be identified ({why})"
        mount = data.get("path") if isinstance(data.get("path"), str) else ""
        options = data.get("options")
        version = options.get("version") if isinstance(options, dict) else None
        kv2 = version == "2" and data.get("type") == "kv"
        if mount:
            mount = mount if mount.endswith("/") else mount + "/"
            self._mounts[mount] = kv2
            log.debug("vault: mount %s is %s", mount, "KV v2" if kv2 else "not KV v2")
            return (shim_kv2_path(raw, mount) if kv2 else raw), ""
        return raw, ""

    def _known_mount(self, raw: str) -> str | None:
        """The longest remembered mount the path is under (Vault refuses nested mounts,
        so at most one can match; the longest is the safe pick all the same)."""
        best: str | None = None
        for mount in self._mounts:
            if (raw == mount.rstrip("/") or raw.startswith(mount)) and (
                best is None or len(mount) > len(best)
            ):
                best = mount
        return best

    async def _get(
        self, path: str, token: str, what: str, *, params: Iterable[tuple[str, str]] = ()
    ) -> _Answer:
        return await self._request("GET", path, token, what, params=list(params))

    async def _request(
        self,
        method: str,
        path: str,
        token: str,
        what: str,
        *,
        params: list[tuple[str, str]] | None = None,
    ) -> _Answer:
        """One request as Vault's Go client makes it: retried on 412, 429, 5xx (not 501)
        and failed connections, all within `timeout`."""
        url = quote(path, safe=_PATH_SAFE)
        headers = {"X-Vault-Token": token} if token else {}
        s = self.settings
        attempt = 0
        try:
            async with asyncio.timeout(s.timeout):
                while True:
                    try:
                        response = await self._http.request(
                            method,
                            url,
                            params=tuple(params or ()),
                            headers=headers,
                            extensions=self._extensions,
                        )
                    except httpx2.TransportError as err:
                        if attempt >= s.max_retries or not _retryable_error(err):
                            detail = str(err) or "no answer"
                            raise VaultError(
                                f"{what}: Vault at {s.address} does not answer: "
                                f"{type(err).__name__}: {detail}"
                            ) from None
                    else:
                        if attempt >= s.max_retries or not _retryable_status(response.status_code):
                            return _Answer(response.status_code, _json(response.content))
                    attempt += 1
                    low, high = self._retry_wait
                    await self._sleep(attempt * random.uniform(low, high))
        except TimeoutError:
            raise VaultError(
                f"{what}: Vault at {s.address} did not answer within "
                f"{format_duration(int(s.timeout * 1e9))}"
            ) from None


def _read_token(path: str) -> str:
    """A token file's first 64 KiB (a token is far shorter), in a worker thread and never
    blocking on a FIFO: the loop must not wait on a file someone else controls."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return os.read(fd, 65536).decode("utf-8", errors="replace").strip()
    finally:
        os.close(fd)


def _json(content: bytes) -> Any:
    """The answer as JSON (fractional numbers kept as written); None when it is not JSON.
    The parse error is dropped: it would quote the body, which may hold a secret."""
    if not content:
        return None
    try:
        return json.loads(content, parse_float=JSONNumber)
    except ValueError:
        return None
