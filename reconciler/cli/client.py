"""The CLI's connection to a running daemon: address, TLS and token from flags and the
environment, one HTTP client, and every failure as one sentence that names the address.

Precedence for each setting: the flag, then `RECONCILER_<NAME>`, then CTS's `CTS_<NAME>`,
then the default. The token has no CTS name (CTS's API has no token). As CTS's client, the
CLI ignores proxy variables, and talks TLS only to an `https://` address; the TLS flags are
ignored for `http://`.
"""

from __future__ import annotations

import http
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx2

from reconciler._core.hosts import is_loopback
from reconciler.cli.flags import FlagSet, parse_bool
from reconciler.settings.tls import ca_files

DEFAULT_ADDRESS = "http://localhost:8558"
# Long enough for a slow network; no limit on the answer, which can wait for an apply.
CONNECT_TIMEOUT = 10.0

# Where `make install` puts the daemon's token (readable by root and the service's group).
DEFAULT_TOKEN_FILE = "/etc/reconciler/token"

# setting -> (flag, environment variables in order of precedence, usage)
_SETTINGS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "address": (
        "http-addr",
        ("RECONCILER_ADDRESS", "CTS_ADDRESS"),
        "The address and port of the daemon's API, with its scheme; https enables TLS\n"
        "(e.g. https://127.0.0.1:8558). Also RECONCILER_ADDRESS or CTS_ADDRESS.",
    ),
    "ca_cert": (
        "ca-cert",
        ("RECONCILER_CACERT", "CTS_CACERT"),
        "Path to a CA file to verify the daemon's certificate with.\n"
        "Also RECONCILER_CACERT or CTS_CACERT.",
    ),
    "ca_path": (
        "ca-path",
        ("RECONCILER_CAPATH", "CTS_CAPATH"),
        "Path to a directory of CA certificates (every file in it) to verify the daemon's\n"
        "certificate with. Also RECONCILER_CAPATH or CTS_CAPATH.",
    ),
    "client_cert": (
        "client-cert",
        ("RECONCILER_CLIENT_CERT", "CTS_CLIENT_CERT"),
        "Path to a client certificate, for a daemon with verify_incoming.\n"
        "Also RECONCILER_CLIENT_CERT or CTS_CLIENT_CERT.",
    ),
    "client_key": (
        "client-key",
        ("RECONCILER_CLIENT_KEY", "CTS_CLIENT_KEY"),
        "Path to the client certificate's key. Also RECONCILER_CLIENT_KEY or CTS_CLIENT_KEY.",
    ),
    "ssl_verify": (
        "ssl-verify",
        ("RECONCILER_SSL_VERIFY", "CTS_SSL_VERIFY"),
        "Verify the daemon's certificate. Also RECONCILER_SSL_VERIFY or CTS_SSL_VERIFY.",
    ),
    "token": (
        "token",
        ("RECONCILER_TOKEN",),
        "The daemon's api_token, sent as Authorization: Bearer. Also RECONCILER_TOKEN, "
        "or the file RECONCILER_TOKEN_FILE names; by default, for a daemon on this host, "
        f"{DEFAULT_TOKEN_FILE} when it is readable.",
    ),
}


class ClientError(Exception):
    """A failure to show the user as it is: one sentence, no traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ResponseError(ClientError):
    """The daemon answered with a 4xx or 5xx."""

    def __init__(self, status: int, message: str, request_id: str) -> None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        text = f"{status} {reason}".strip() + f": {message}"
        if request_id:
            # CTS's client wording (api/task_lifecycle_client.go).
            text += f", see logs for more details (Request ID: {request_id})"
        super().__init__(text)
        self.status = status
        self.api_message = message
        self.request_id = request_id


@dataclass(frozen=True)
class ClientSettings:
    address: str = DEFAULT_ADDRESS  # scheme://host[:port]
    ca_cert: str = ""
    ca_path: str = ""
    client_cert: str = ""
    client_key: str = ""
    ssl_verify: bool = True
    token: str = ""

    @property
    def tls(self) -> bool:
        return self.address.startswith("https://")


def add_client_flags(flags: FlagSet) -> None:
    for setting, (flag, _, usage) in _SETTINGS.items():
        if setting == "ssl_verify":
            flags.add(flag, bool, True, usage)
        else:
            flags.add(flag, str, DEFAULT_ADDRESS if setting == "address" else "", usage)
    flags.add(
        "port",
        int,
        8558,
        "[Deprecated] The port of the daemon's API; -http-addr is preferred.",
    )


def normalise_address(address: str) -> str:
    """`scheme://host[:port]` of an address; without a scheme, http is meant."""
    if "://" not in address:
        address = "http://" + address
    parts = urlsplit(address)
    if parts.scheme not in ("http", "https"):
        raise ClientError(f"unknown protocol scheme: {parts.scheme}")
    if not parts.hostname:
        raise ClientError("invalid address, host value is empty")
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ClientError(f"invalid address {address!r}: {exc}") from None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def resolve_settings(flags: FlagSet, environ: Mapping[str, str]) -> tuple[ClientSettings, str]:
    """The settings from the parsed flags and the environment, and a warning ("" for none)."""
    values: dict[str, Any] = {}
    for setting, (flag, names, _) in _SETTINGS.items():
        if flag in flags.given:
            values[setting] = flags.values[flag]
            continue
        name = next((n for n in names if n in environ), None)
        if name is None:
            continue
        if setting == "ssl_verify":
            parsed = parse_bool(environ[name])
            if parsed is None:
                raise ClientError(f'invalid boolean value "{environ[name]}" for {name}')
            values[setting] = parsed
        else:
            values[setting] = environ[name]
    address = normalise_address(values.pop("address", DEFAULT_ADDRESS))
    warning = ""
    if "port" in flags.given:
        warning = (
            "Warning: 'port' option is deprecated and will be removed in a later version. "
            "It is preferred to use the 'http-addr' option instead."
        )
        if "http-addr" not in flags.given:
            host = urlsplit(address).hostname or "localhost"
            host = f"[{host}]" if ":" in host else host
            address = f"{urlsplit(address).scheme}://{host}:{flags.integer('port')}"
    if "token" not in values:
        values["token"] = token_from_file(environ, address)
    return ClientSettings(address=address, **values), warning


def token_from_file(environ: Mapping[str, str], address: str) -> str:
    """The token in RECONCILER_TOKEN_FILE (which must be readable), else the installed
    daemon's token file when it is readable and the address is on this host: that
    token is never sent elsewhere on its own."""
    named = environ.get("RECONCILER_TOKEN_FILE")
    if named:
        try:
            return Path(named).read_text().strip()
        except OSError as exc:
            raise ClientError(f'RECONCILER_TOKEN_FILE "{named}": {exc.strerror or exc}') from None
    if not is_loopback(urlsplit(address).hostname or ""):
        return ""
    try:
        return Path(DEFAULT_TOKEN_FILE).read_text().strip()
    except OSError:
        return ""  # not installed here, or not ours to read: no token


def ssl_context(settings: ClientSettings) -> ssl.SSLContext:
    """As CTS's client (go-rootcerts): the CA file, else every file of the CA directory,
    else the system's CAs; the client certificate when both it and its key are given."""
    if bool(settings.client_cert) != bool(settings.client_key):
        raise ClientError("both client cert and client key must be provided")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        if settings.ca_cert:
            ctx.load_verify_locations(cafile=settings.ca_cert)
        elif settings.ca_path:
            files = ca_files(Path(settings.ca_path))
            if not files:
                raise ClientError(f'no CA certificates in "{settings.ca_path}"')
            for path in files:
                ctx.load_verify_locations(cafile=path)
        else:
            ctx.load_default_certs()
        if settings.client_cert:
            ctx.load_cert_chain(settings.client_cert, settings.client_key)
    except (OSError, ssl.SSLError) as exc:
        raise ClientError(f"cannot load the TLS files: {_reason(exc)}") from None
    if not settings.ssl_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror.lower()}{where}"
    return str(exc)


def _root_cause(exc: BaseException) -> BaseException:
    """The lowest socket or TLS error under httpx2's wrapping."""
    found = exc
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError):
            found = current
        current = current.__cause__ or current.__context__
    return found


def describe_transport_error(
    exc: httpx2.TransportError, address: str, *, client_cert: bool = False
) -> str:
    """One sentence for a request that got no HTTP answer."""
    cause = _root_cause(exc)
    https = address.startswith("https://")
    if client_cert:
        certificate = "the daemon may not accept this client certificate"
    else:
        certificate = "the daemon may require a client certificate (-client-cert and -client-key)"
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"cannot verify the certificate of the daemon at {address}: "
            f"{cause.verify_message or _reason(cause)}; give its CA with -ca-cert or -ca-path "
            "(or skip the check with -ssl-verify=false)"
        )
    if isinstance(cause, ssl.SSLError):
        reason = _reason(cause)
        if "certificate" in reason or "handshake failure" in reason:
            hint = f"; {certificate}"
        elif "wrong version number" in reason or "record layer" in reason:
            hint = "; the daemon may not serve TLS: try an http:// address"
        else:
            hint = ""
        return f"TLS with the daemon at {address} failed: {reason}{hint}"
    if isinstance(cause, ConnectionRefusedError):
        return (
            f"cannot connect to the daemon at {address}: connection refused "
            "(is `reconciler start` running there? set -http-addr or RECONCILER_ADDRESS)"
        )
    if isinstance(cause, socket.gaierror):
        return f"cannot resolve the daemon's address {address}: {cause.strerror or cause}"
    if isinstance(exc, httpx2.TimeoutException):
        return f"timed out connecting to the daemon at {address}"
    if isinstance(exc, httpx2.RemoteProtocolError):
        closed = f"the daemon at {address} closed the connection without answering"
        if https:
            # With TLS 1.3 a refused client certificate shows only after the handshake.
            return f"{closed}; {certificate}"
        # CTS's hint (command/helpers.go processEOFError).
        return (
            f"{closed}: the client may have sent an HTTP request to an HTTPS server; "
            "consider using the https scheme instead"
        )
    detail = _reason(cause) if cause is not exc else str(exc) or type(exc).__name__
    return f"no answer from the daemon at {address}: {detail}"


class ApiClient:
    """Requests to the daemon's API; answers as parsed JSON, failures as ClientError."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.address = settings.address
        headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
        self._http = httpx2.Client(
            base_url=settings.address,
            headers=headers,
            verify=ssl_context(settings) if settings.tls else False,
            timeout=httpx2.Timeout(None, connect=CONNECT_TIMEOUT),
            trust_env=False,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        expect: tuple[int, ...] = (200,),
    ) -> Any:
        try:
            response = self._http.request(method, path, params=params, json=body)
        except httpx2.TransportError as exc:
            raise ClientError(
                describe_transport_error(
                    exc, self.address, client_cert=bool(self.settings.client_cert)
                )
            ) from None
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        if response.status_code >= 400:
            message, rid = response.text.strip() or response.reason_phrase, ""
            if isinstance(answer, dict):
                error = answer.get("error")
                if isinstance(error, dict) and isinstance(error.get("message"), str):
                    message = error["message"]
                rid = str(answer.get("request_id") or "")
            error = ResponseError(response.status_code, message, rid)
            if response.status_code == 401:
                given = "a different token" if self.settings.token else "the daemon's api_token"
                error.message += f"; give {given} with -token or RECONCILER_TOKEN"
            raise error
        if response.status_code not in expect:
            raise ClientError(
                f"unexpected answer from the daemon at {self.address}: "
                f"{response.status_code} {response.reason_phrase} to {method} {path}"
            )
        if answer is None and response.content:
            raise ClientError(
                f"the daemon at {self.address} answered {method} {path} with something "
                "that is not JSON"
            )
        return answer
