"""Consul KV reads for the state placement (reconciler.runner.state): whether CTS left a
task's Terraform state in Consul, read through the daemon's own Consul connection."""

from __future__ import annotations

import asyncio
import base64
import binascii
from urllib.parse import quote

import httpx2

from reconciler.consul.client import ConsulAPI, ConsulError, ConsulUnavailable
from reconciler.runner.state import NoConsulError, StateError

TIMEOUT = 10.0


class ConsulKV:
    """`KVReader` over a ConsulAPI: one non-blocking GET per key, bounded by a timeout."""

    def __init__(self, api: ConsulAPI, *, timeout: float = TIMEOUT) -> None:
        self.api = api
        self.timeout = timeout

    async def get(self, key: str) -> bytes | None:
        where = f"/v1/kv/{quote(key, safe='/:')}"
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.api.get(where, not_found_ok=True, what="kv.get")
        except ConsulUnavailable as exc:
            if isinstance(exc.__cause__, httpx2.ConnectError):
                raise NoConsulError(str(exc)) from None
            raise StateError(f"Consul KV {key} cannot be read: {exc}") from None
        except ConsulError as exc:
            raise StateError(f"Consul KV {key} cannot be read: {exc}") from None
        except TimeoutError:
            raise StateError(
                f"Consul KV {key} cannot be read: no answer in {self.timeout:.0f}s"
            ) from None
        if not isinstance(answer.body, list) or not answer.body:
            return None
        value = answer.body[0].get("Value") if isinstance(answer.body[0], dict) else None
        if not value:
            return b""
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            raise StateError(f"Consul KV {key}: the value is not base64") from None
