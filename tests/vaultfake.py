"""An in-test server that speaks the part of Vault's HTTP API the daemon's client uses.

A real HTTP/1.1 server on a loopback port (plain asyncio, optionally TLS), so that the
client's whole path is exercised: headers, status codes, TLS, connection failures. What it
answers follows Vault:

- KV v2: `GET /v1/<mount>/data/<path>[?version=N]` -> {"data": {"data": {...},
  "metadata": {...}}, "lease_duration": 0, ...}; a deleted version is a 404 that still
  carries its metadata; `<mount>/<path>` without `data/` is a 404 with Vault's warning.
- KV v1: `GET /v1/<mount>/<path>` -> {"data": {...}, "lease_duration": 2764800, ...}.
- `GET /v1/sys/internal/ui/mounts/<path>` -> {"data": {"path": "<mount>/", "type": "kv",
  "options": {"version": "2"}}}; 403 with Vault's "preflight capability check" error when
  the token is missing or invalid or the path is under no mount (Vault answers 403 rather
  than 404 so that mounts cannot be probed); 404 for everything with `preflight = False`
  (a Vault older than the endpoint).
- `PUT /v1/sys/wrapping/unwrap` with a wrapping token from `wrap()`: once.
- The token (`X-Vault-Token`): missing or unknown -> 403 {"errors": ["permission denied"]}.
- Namespaces (`X-Vault-Namespace`): mounts live in one namespace and are seen only there.
- 404 {"errors": []} for a missing secret.

Faults on demand: `fail(status, times=K)` answers the next K matching requests with the
status; `stall(seconds, times=K)` holds them (a Vault that does not answer); `stop()` and
`start()` on the same port. Every request is recorded (method, path, query, headers with
lower-case names), so tests can assert what was sent.

`ThreadedVault` runs it on an event loop of its own for tests that are not async.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from fakeserver import LoopbackServer, OnItsOwnLoop, read_request, write_response

T = TypeVar("T")

KV1_LEASE = 2764800  # KV v1 answers carry the mount's default TTL, 768 h
KV2_INVALID_PATH = (
    "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate "
    "API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
)


@dataclass
class Request:
    method: str
    path: str  # without the query, percent-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @property
    def token(self) -> str | None:
        return self.headers.get("x-vault-token")

    @property
    def namespace(self) -> str | None:
        return self.headers.get("x-vault-namespace")


@dataclass
class Fault:
    status: int
    errors: list[str]
    path: str  # applies to requests whose path starts with this
    times: int
    delay: float = 0.0  # > 0: hold the request this long (then answer normally)


@dataclass
class Version:
    data: dict[str, Any] | None  # None once destroyed
    created_time: str
    deletion_time: str = ""
    destroyed: bool = False


@dataclass
class Mount:
    path: str  # "secret/"
    version: int  # 1 or 2
    namespace: str = ""
    accessor: str = field(default_factory=lambda: f"kv_{uuid.uuid4().hex[:8]}")
    kv1: dict[str, dict[str, Any]] = field(default_factory=dict)
    kv2: dict[str, list[Version]] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def _ns(name: str | None) -> str:
    return (name or "").strip("/")


class FakeVault(LoopbackServer):
    def __init__(
        self,
        *,
        token: str | None = "root",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(port=port, tls=tls)
        self.tokens: set[str] = {token} if token else set()  # valid tokens; all powerful
        self.preflight = True  # False: sys/internal/ui/mounts is 404 (an old Vault)
        self.mounts: dict[tuple[str, str], Mount] = {}  # (namespace, "secret/") -> Mount
        self.wrapped: dict[str, str] = {}  # wrapping token -> the token it unwraps to
        self.requests: list[Request] = []
        self.faults: list[Fault] = []

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # --- data, from tests ----------------------------------------------------------------

    def mount(self, path: str, version: int = 2, *, namespace: str = "") -> Mount:
        """Enable a KV engine at `path` (in `namespace`); an existing one is kept."""
        key = (_ns(namespace), path.strip("/") + "/")
        if key not in self.mounts:
            self.mounts[key] = Mount(key[1], version, key[0])
        return self.mounts[key]

    def put_kv2(self, mount: str, path: str, data: dict[str, Any], *, namespace: str = "") -> int:
        """Write a new version of a KV v2 secret (mounting KV v2 if needed); its number."""
        m = self.mount(mount, 2, namespace=namespace)
        assert m.version == 2, f"{m.path} is KV v{m.version}"
        versions = m.kv2.setdefault(path.strip("/"), [])
        versions.append(Version(dict(data), _now()))
        return len(versions)

    def put_kv1(self, mount: str, path: str, data: dict[str, Any], *, namespace: str = "") -> None:
        m = self.mount(mount, 1, namespace=namespace)
        assert m.version == 1, f"{m.path} is KV v{m.version}"
        m.kv1[path.strip("/")] = dict(data)

    def delete_kv2(
        self, mount: str, path: str, *, version: int | None = None, namespace: str = ""
    ) -> None:
        """A soft delete of the latest (or the given) version, as `vault kv delete`."""
        versions = self.mounts[(_ns(namespace), mount.strip("/") + "/")].kv2[path.strip("/")]
        versions[(version or len(versions)) - 1].deletion_time = _now()

    def destroy_kv2(
        self, mount: str, path: str, *, version: int | None = None, namespace: str = ""
    ) -> None:
        versions = self.mounts[(_ns(namespace), mount.strip("/") + "/")].kv2[path.strip("/")]
        v = versions[(version or len(versions)) - 1]
        v.destroyed, v.data = True, None

    def wrap(self, token: str) -> str:
        """A single-use wrapping token that unwraps to `token` (which becomes valid)."""
        self.tokens.add(token)
        wrapping = f"hvs.wrap-{uuid.uuid4().hex[:12]}"
        self.wrapped[wrapping] = token
        return wrapping

    def fail(
        self, status: int, *, times: int = 1, path: str = "/", errors: list[str] | None = None
    ) -> None:
        """Answer the next `times` requests under `path` with `status`."""
        errors = ["injected failure"] if errors is None else errors
        self.faults.append(Fault(status, errors, path, times))

    def stall(self, seconds: float, *, times: int = 1, path: str = "/") -> None:
        """Hold the next `times` requests under `path` for `seconds` before answering."""
        self.faults.append(Fault(0, [], path, times, delay=seconds))

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    @property
    def reads(self) -> list[Request]:
        """The requests that were not mount look-ups."""
        return [r for r in self.requests if not r.path.startswith("/v1/sys/")]

    # --- HTTP ----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._open(writer):
            try:
                while True:
                    head = await read_request(reader)
                    if head is None:
                        return
                    req = Request(*head)
                    self.requests.append(req)
                    status, body = await self._answer(req)
                    payload = b"" if status == 204 else orjson.dumps(body)
                    await write_response(writer, status, payload)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, ValueError):
                return
            except asyncio.CancelledError:
                return  # stop() cuts this connection

    def _fault(self, req: Request) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and req.path.startswith(fault.path):
                fault.times -= 1
                return fault
        return None

    async def _answer(self, req: Request) -> tuple[int, Any]:
        fault = self._fault(req)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            else:
                return fault.status, {"errors": fault.errors}
        path = req.path.removeprefix("/v1/")
        namespace = _ns(req.namespace)
        if path.startswith("sys/internal/ui/mounts/"):
            return self._preflight(req, namespace, path.removeprefix("sys/internal/ui/mounts/"))
        if path == "sys/wrapping/unwrap" and req.method in ("PUT", "POST"):
            return self._unwrap(req)
        if req.token not in self.tokens:
            return 403, {"errors": ["permission denied"]}
        if req.method != "GET":
            return 405, {"errors": [f"unsupported operation {req.method}"]}
        mount = self._mount_of(namespace, path)
        if mount is None:
            return 404, {"errors": [f'no handler for route "{path}". route entry not found.']}
        rest = path.removeprefix(mount.path.rstrip("/")).lstrip("/")
        if mount.version == 1:
            data = mount.kv1.get(rest)
            if data is None:
                return 404, {"errors": []}
            return 200, _secret(data, lease=KV1_LEASE)
        return self._kv2(req, mount, rest)

    def _mount_of(self, namespace: str, path: str) -> Mount | None:
        for (ns, mount_path), mount in self.mounts.items():
            if ns == namespace and (path + "/").startswith(mount_path):
                return mount
        return None

    def _preflight(self, req: Request, namespace: str, path: str) -> tuple[int, Any]:
        if not self.preflight:
            return 404, {"errors": []}
        denied = {
            "errors": [
                "preflight capability check returned 403, please ensure client's policies "
                f'grant access to path "{path.rstrip("/")}/"'
            ]
        }
        mount = self._mount_of(namespace, path)
        if req.token not in self.tokens or mount is None:
            return 403, denied
        return 200, _secret(
            {
                "accessor": mount.accessor,
                "config": {"default_lease_ttl": 0, "force_no_cache": False, "max_lease_ttl": 0},
                "description": "key/value secret storage",
                "external_entropy_access": False,
                "local": False,
                "options": {"version": str(mount.version)},
                "path": mount.path,
                "seal_wrap": False,
                "type": "kv",
                "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, mount.accessor)),
            }
        )

    def _unwrap(self, req: Request) -> tuple[int, Any]:
        token = self.wrapped.pop(req.token or "", None)
        if token is None:
            return 400, {"errors": ["wrapping token is not valid or does not exist"]}
        body = _secret(None)
        body["auth"] = {
            "client_token": token,
            "accessor": uuid.uuid4().hex[:24],
            "policies": ["default"],
            "lease_duration": 3600,
            "renewable": True,
        }
        return 200, body

    def _kv2(self, req: Request, mount: Mount, rest: str) -> tuple[int, Any]:
        if not rest.startswith("data/"):
            body = _secret(None)
            body["warnings"] = [KV2_INVALID_PATH]
            return 404, body
        versions = mount.kv2.get(rest.removeprefix("data/"))
        if not versions:
            return 404, {"errors": []}
        wanted = (req.query.get("version") or ["0"])[0]
        try:
            number = int(wanted) or len(versions)
        except ValueError:
            return 400, {"errors": [f'invalid version "{wanted}"']}
        if not 1 <= number <= len(versions):
            return 404, {"errors": []}
        v = versions[number - 1]
        metadata = {
            "created_time": v.created_time,
            "custom_metadata": None,
            "deletion_time": v.deletion_time,
            "destroyed": v.destroyed,
            "version": number,
        }
        if v.deletion_time or v.destroyed:
            return 404, _secret({"data": None, "metadata": metadata})
        return 200, _secret({"data": v.data, "metadata": metadata})


def _secret(data: Any, *, lease: int = 0) -> dict[str, Any]:
    """Vault's response envelope (api.Secret)."""
    return {
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": lease,
        "data": data,
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }


class ThreadedVault(OnItsOwnLoop[FakeVault]):
    """FakeVault on an event loop of its own, for a test that is not async (the daemon is
    another process, or the code under test runs its own loop)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(FakeVault(**kwargs))

    @property
    def address(self) -> str:
        return self.fake.address

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the server's loop, so that the test thread never changes its data
        while a request is being answered."""

        async def go() -> T:
            return fn(*args, **kwargs)

        return self.run(go())

    def put_kv2(self, mount: str, path: str, data: dict[str, Any], **kwargs: Any) -> int:
        return self.call(self.fake.put_kv2, mount, path, data, **kwargs)

    def put_kv1(self, mount: str, path: str, data: dict[str, Any], **kwargs: Any) -> None:
        self.call(self.fake.put_kv1, mount, path, data, **kwargs)
