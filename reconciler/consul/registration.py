"""The daemon registers itself as a Consul service, as CTS does by default
(`consul { service_registration { ... } }`), and deregisters on a clean stop.

The registration CTS makes: service `service_name` with ID = the daemon's `id`, tag `cts`,
the API's port, and a check "CTS Health Status" (ID `<id>-health`): an HTTP GET of
`<address>/v1/health` every 10 s with a 2 s timeout, deregistered after 30 m critical.
Registering runs in the background and retries while Consul is unreachable (1 s doubling
to 60 s): it never holds up the start or the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import quote

from reconciler._core.backoff import Backoff
from reconciler.consul.client import ConsulClient, ConsulError, ConsulHTTPError
from reconciler.settings.model import Settings

log = logging.getLogger("reconciler.consul")

TAG = "cts"
CHECK_NAME = "CTS Health Status"
DEREGISTER_TIMEOUT = 5.0
# Registering retries while Consul is unreachable: 1 s doubling to 60 s, for as long as it
# takes (the daemon serves meanwhile; only Consul's view of it waits).
RETRY = Backoff(first=1.0, cap=60.0, jitter=0.0)


def registration_body(settings: Settings) -> dict[str, Any]:
    """The body of `PUT /v1/agent/service/register`."""
    reg = settings.consul.service_registration
    body: dict[str, Any] = {
        "ID": settings.id,
        "Name": reg.service_name,
        "Tags": [TAG],
        "Port": settings.port,
    }
    if reg.address:
        body["Address"] = reg.address
    if reg.namespace:
        body["Namespace"] = reg.namespace
    check = reg.default_check
    if check.enabled:
        scheme = "https" if settings.tls.enabled else "http"
        address = (check.address or f"{scheme}://localhost:{settings.port}").rstrip("/")
        body["Check"] = {
            "Name": CHECK_NAME,
            "CheckID": f"{settings.id}-health",
            "HTTP": f"{address}/v1/health",
            "Method": "GET",
            "Interval": "10s",
            "Timeout": "2s",
            "DeregisterCriticalServiceAfter": "30m",
            # Our own certificate may be self-signed; the check only asks "is it up".
            "TLSSkipVerify": scheme == "https" and not check.address,
        }
    return body


class SelfRegistration:
    """Owned by the event loop."""

    def __init__(self, client: ConsulClient, settings: Settings) -> None:
        self._client = client
        self.body = registration_body(settings)
        self.id = str(self.body["ID"])
        self.registered = False
        self._sent = False  # a registration was sent (its answer may not have come back)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._register(), name="consul registration"
            )

    async def _register(self) -> None:
        failures = 0
        while True:
            try:
                self._sent = True
                await self._client.put(
                    "/v1/agent/service/register", self.body, what="agent.service.register"
                )
            except ConsulError as err:
                # An error answer: not registered. No answer: it may have arrived.
                self._sent = not isinstance(err, ConsulHTTPError)
                failures += 1
                delay = RETRY.delay(failures)
                log.warning(
                    "consul: registering service %s failed, retrying in %gs: %s",
                    self.id,
                    delay,
                    err,
                )
                await asyncio.sleep(delay)
                continue
            self.registered = True
            log.info("consul: registered service %s (%s)", self.id, self.body["Name"])
            return

    async def close(self) -> None:
        """Stop trying, and deregister if registered (bounded: a stop never hangs)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not (self.registered or self._sent):
            return  # never asked Consul: nothing to take back
        try:
            await asyncio.wait_for(
                self._client.put(
                    f"/v1/agent/service/deregister/{quote(self.id, safe='')}",
                    what="agent.service.deregister",
                ),
                DEREGISTER_TIMEOUT,
            )
            self.registered = False
            log.info("consul: deregistered service %s", self.id)
        except ConsulHTTPError as err:
            if err.status == 404 and not self.registered:
                return  # the registration in flight never arrived
            log.warning("consul: deregistering service %s failed: %s", self.id, err)
        except (ConsulError, TimeoutError) as err:
            log.warning("consul: deregistering service %s failed: %s", self.id, err or "timed out")
