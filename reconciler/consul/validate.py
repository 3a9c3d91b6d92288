"""Validation at create: a task whose condition or module_input names a datacenter or
namespace that Consul rejects is refused before anything is written, with Consul's message.

One non-blocking query per distinct (datacenter, namespace), bounded by a timeout, so a
create never hangs. An unreachable Consul does not refuse the task: its queries then show
the problem in the task's status, and it starts once Consul answers (refusing would make
creating tasks impossible exactly when an operator may be repairing things).
"""

from __future__ import annotations

import asyncio
import logging

from reconciler.consul.client import (
    ConsulAPI,
    ConsulError,
    ConsulHTTPError,
    datacenter_params,
)
from reconciler.taskfiles.model import TaskSpec

log = logging.getLogger("reconciler.consul")

TIMEOUT = 5.0


def _scopes(spec: TaskSpec) -> list[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for part in (spec.condition, *spec.module_inputs):
        dc = getattr(part, "datacenter", None) or ""
        ns = getattr(part, "namespace", None) or ""
        if dc or ns:
            found.add((dc, ns))
    return sorted(found)


def _rejected(err: ConsulHTTPError) -> bool:
    """Consul says the datacenter or namespace is wrong (not: Consul is unwell)."""
    return err.status in (400, 403, 404) or "No path to datacenter" in err.body


async def scope_problem(api: ConsulAPI, spec: TaskSpec, *, timeout: float = TIMEOUT) -> str | None:
    """Consul's message when it rejects a datacenter or namespace the task names."""
    for dc, ns in _scopes(spec):
        shown = ", ".join(
            p for p in (f'datacenter "{dc}"' if dc else "", f'namespace "{ns}"' if ns else "") if p
        )
        try:
            await asyncio.wait_for(
                api.get("/v1/catalog/services", datacenter_params(dc, ns), what="catalog.services"),
                timeout,
            )
        except ConsulHTTPError as err:
            if _rejected(err):
                return f'task "{spec.name}": Consul rejects {shown}: {err.body or err}'
            log.warning("task %s: %s could not be checked: %s", spec.name, shown, err)
        except (ConsulError, TimeoutError) as err:
            log.warning(
                "task %s: %s could not be checked: %s", spec.name, shown, err or "timed out"
            )
    return None
