"""A small asyncio client for etcd's v3 API over its JSON gateway (`/v3/...`).

What the election needs and nothing more: leases (grant, keep alive, revoke), reads of a key
or a prefix, a create-if-absent transaction, puts and deletes. Spoken over HTTP with httpx,
the project's HTTP client, so that TLS (a CA, a client certificate) and several endpoints
(the next one is tried when one fails) come for free; the gRPC clients on PyPI offer
neither (aetcd: one plaintext endpoint) or are synchronous (etcd3gw).
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from reconciler.settings.model import EtcdTLSSettings


class EtcdError(Exception):
    """No endpoint answered, or etcd refused the request."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def _prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return _b64(bytes(raw))


def _kv(raw: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(raw["key"]).decode(),
        value=base64.b64decode(raw.get("value", "")),
        create_revision=int(raw.get("create_revision", 0)),
        mod_revision=int(raw.get("mod_revision", 0)),
        lease=int(raw.get("lease", 0)),
    )


def _tls_context(tls: EtcdTLSSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca_cert) if tls.ca_cert else None)
    if tls.cert is not None and tls.key is not None:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


class Etcd:
    def __init__(
        self, endpoints: Sequence[str], *, tls: EtcdTLSSettings | None = None, timeout: float = 5.0
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._preferred = 0  # the endpoint that answered last
        verify: ssl.SSLContext | bool = _tls_context(tls) if tls is not None else True
        self._http = httpx2.AsyncClient(timeout=timeout, verify=verify, trust_env=False)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the endpoint that answered last, then to each other one in turn."""
        failures: list[str] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._preferred + step) % count
            url = f"{self.endpoints[index]}{path}"
            try:
                response = await self._http.post(url, json=body)
            except httpx2.HTTPError as exc:
                failures.append(f"{self.endpoints[index]}: {exc or type(exc).__name__}")
                continue
            if response.status_code >= 500:
                failures.append(f"{self.endpoints[index]}: HTTP {response.status_code}")
                continue
            try:
                data: dict[str, Any] = response.json()
            except ValueError:
                failures.append(f"{self.endpoints[index]}: not an etcd answer")
                continue
            self._preferred = index
            if response.status_code != 200 or "error" in data:
                raise EtcdError(f"etcd refused {path}: {data.get('message') or data}")
            return data
        raise EtcdError("no etcd endpoint answered: " + "; ".join(failures))

    # --- leases --------------------------------------------------------------------------

    async def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its id."""
        data = await self._call("/v3/lease/grant", {"TTL": ttl})
        return int(data["ID"])

    async def keep_alive(self, lease: int) -> int:
        """Renew the lease; the seconds it has left now (0: it has expired)."""
        data = await self._call("/v3/lease/keepalive", {"ID": str(lease)})
        return int(data.get("result", {}).get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        """End the lease now: the keys it holds are deleted."""
        await self._call("/v3/lease/revoke", {"ID": str(lease)})

    # --- keys ------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        data = await self._call("/v3/kv/range", {"key": _b64(key)})
        kvs = data.get("kvs", [])
        return _kv(kvs[0]) if kvs else None

    async def get_prefix(self, prefix: str) -> list[KeyValue]:
        data = await self._call(
            "/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)}
        )
        return [_kv(raw) for raw in data.get("kvs", [])]

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> None:
        await self._call("/v3/kv/put", {"key": _b64(key), "value": _b64(value), "lease": lease})

    async def create(
        self, key: str, value: bytes, *, lease: int = 0
    ) -> tuple[int, KeyValue | None]:
        """Put `key` only if it does not exist, in one transaction: (the revision that
        created it, None), or (0, the key as it exists)."""
        data = await self._call(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": _b64(key),
                        "result": "EQUAL",
                        "target": "CREATE",
                        "create_revision": "0",
                    }
                ],
                "success": [
                    {"request_put": {"key": _b64(key), "value": _b64(value), "lease": lease}}
                ],
                "failure": [{"request_range": {"key": _b64(key)}}],
            },
        )
        if data.get("succeeded"):
            return int(data["header"]["revision"]), None
        # The read ran in the same transaction as the failed compare: the key is there.
        return 0, _kv(data["responses"][0]["response_range"]["kvs"][0])

    async def delete(self, key: str) -> None:
        await self._call("/v3/kv/deleterange", {"key": _b64(key)})
