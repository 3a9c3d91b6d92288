"""A thin asyncio client for the few Consul HTTP endpoints CTS reads.

It only sends requests and classifies answers; what to do about an error (retry, reset
the index, give up) is the watcher's business, following hcat's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx2
import orjson

from reconciler.consul.connection import ClientConfig, http_client

Params = Sequence[tuple[str, str]]


class ConsulError(Exception):
    """Anything that kept a query from giving an answer."""


class ConsulUnavailable(ConsulError):
    """No HTTP answer: connection refused or reset, a timeout, a TLS failure."""


class ConsulHTTPError(ConsulError):
    """Consul answered with an error status."""

    def __init__(self, status: int, body: str, what: str) -> None:
        self.status = status
        self.body = body.strip()
        # The wording of consul/api's errors, which users search for.
        super().__init__(f"{what}: Unexpected response code: {status} ({self.body})")


class ConsulProtocolError(ConsulError):
    """An answer we cannot use: an unparsable X-Consul-Index, a body that is not JSON."""


@dataclass(frozen=True)
class Response:
    body: Any  # decoded JSON; None for a 404 that means "no such key"
    # X-Consul-Index, or None when the header is missing (a proxy that strips it, or an
    # endpoint without blocking support).
    index: int | None
    known_leader: bool = True


def parse_index(value: str | None, what: str) -> int | None:
    """X-Consul-Index as consul/api parses it: absent is "no index", garbage is an error."""
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()):
        raise ConsulProtocolError(f"{what}: Failed to parse X-Consul-Index: {value!r}")
    index = int(value)
    return index


class ConsulAPI(Protocol):
    """What queries, watchers and the leader wait read Consul through: a Consul agent over
    HTTP (ConsulClient), or anything else that answers Consul's HTTP API with its blocking
    semantics (the index, X-Consul-Index, 400 for a bad query, 404 for a missing key)."""

    async def get(
        self,
        path: str,
        params: Params = (),
        *,
        index: int = 0,
        wait: float | None = None,
        not_found_ok: bool = False,
        what: str = "",
    ) -> Response: ...

    async def leader(self) -> str: ...


class ConsulClient:
    """One Consul agent. Not thread-safe: the event loop owns it."""

    def __init__(self, config: ClientConfig, *, http: httpx2.AsyncClient | None = None) -> None:
        self.config = config
        self._http = http or http_client(config)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(
        self,
        path: str,
        params: Params = (),
        *,
        index: int = 0,
        wait: float | None = None,
        not_found_ok: bool = False,
        what: str = "",
    ) -> Response:
        """GET `path`; a blocking query when `index` > 0 (hcat omits the index while it is
        0, so the first answer comes at once)."""
        what = what or path
        query: list[tuple[str, str | int | float | bool | None]] = list(params)
        timeout: httpx2.Timeout | None = None
        if index > 0:
            query.append(("index", str(index)))
            w = self.config.wait if wait is None else wait
            query.append(("wait", _duration(w)))
            timeout = self.config.timeout(blocking_wait=w)
        try:
            response = await self._http.get(
                path,
                params=query,
                extensions=self.config.request_extensions(),
                timeout=timeout or httpx2.USE_CLIENT_DEFAULT,
            )
        except httpx2.TransportError as err:
            detail = str(err) or "no answer"
            raise ConsulUnavailable(f"{what}: {type(err).__name__}: {detail}") from err
        headers = response.headers
        if response.status_code == 404 and not_found_ok:
            body: Any = None
        elif response.status_code != 200:
            raise ConsulHTTPError(response.status_code, response.text, what)
        else:
            try:
                body = orjson.loads(response.content)
            except orjson.JSONDecodeError as err:
                raise ConsulProtocolError(f"{what}: the answer is not JSON: {err}") from err
        return Response(
            body=body,
            index=parse_index(headers.get("X-Consul-Index"), what),
            known_leader=headers.get("X-Consul-KnownLeader", "true") == "true",
        )

    async def put(self, path: str, body: Any = None, *, what: str = "") -> None:
        """PUT `path` with a JSON body (the agent's register/deregister endpoints)."""
        what = what or path
        try:
            response = await self._http.put(
                path,
                content=orjson.dumps(body) if body is not None else b"",
                headers={"Content-Type": "application/json"},
                extensions=self.config.request_extensions(),
            )
        except httpx2.TransportError as err:
            detail = str(err) or "no answer"
            raise ConsulUnavailable(f"{what}: {type(err).__name__}: {detail}") from err
        if response.status_code != 200:
            raise ConsulHTTPError(response.status_code, response.text, what)

    async def leader(self) -> str:
        """`GET /v1/status/leader`: the leader's address, "" while the cluster has none."""
        answer = await self.get("/v1/status/leader", what="status.leader")
        return answer.body if isinstance(answer.body, str) else ""


def _duration(seconds: float) -> str:
    """Consul's wait parameter: a Go duration; milliseconds keep tests' short waits exact."""
    return f"{max(1, round(seconds * 1000))}ms"


def datacenter_params(datacenter: str, namespace: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if datacenter:
        out.append(("dc", datacenter))
    if namespace:
        out.append(("ns", namespace))
    return out


def node_meta_params(node_meta: Mapping[str, str]) -> list[tuple[str, str]]:
    # One node-meta=k:v per entry (consul/api QueryOptions.NodeMeta), in a stable order.
    return [("node-meta", f"{k}:{v}") for k, v in sorted(node_meta.items())]
