"""Where a task's Terraform state lives, decided once per task workspace.

With a backend configured in `driver "terraform"`, every task uses it (one Terraform
workspace per task, named after it, as CTS does). Without one, CTS keeps each task's state
in Consul KV (`backend "consul"` at `<kv_path>/terraform`, key
`<path>-env:<task>`), and a daemon that did not would plan against empty state and build
every resource a second time. So with no backend configured:

- when the daemon uses Consul (a consul block, or CONSUL_HTTP_ADDR): CTS's backend;
- otherwise local state in the task's workspace, except that CTS's default Consul
  (localhost:8500, with no consul block) is looked at first, and a task whose state CTS
  left there keeps using it.

State is never silently abandoned: a workspace that holds local state (from an earlier run
of this daemon) keeps it, with a warning when Consul is the default; a task with state in
both places is refused until an operator chooses; a workspace initialised on the Consul
backend (by CTS) is never quietly switched to empty local state.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from reconciler._core.errors import ReconcilerError
from reconciler.settings.model import CONSUL_BLOCK, CONSUL_DEFAULT, CONSUL_ENVIRONMENT, Settings
from reconciler.settings.resolve import default_backend

Backend = Mapping[str, Mapping[str, Any]]
LOCAL: Backend = {"local": {}}
ENV_SUFFIX = "-env:"  # Terraform's consul backend: <path>-env:<workspace>
_GZIP_MAGIC = b"\x1f"
# A state larger than this (CTS state is rarely past a few MB) is not read to be counted.
_MAX_STATE = 64 * 1024 * 1024


class StateError(ReconcilerError):
    """The task's state cannot be placed safely: it exists in two places, or where it is
    cannot be asked. The task does not run until an operator decides."""

    reason = "StateConflict"


class NoConsulError(Exception):
    """Nothing answers at the Consul address (connection refused): there is no Consul
    here, so there is no state in it."""


class KVReader(Protocol):
    """Reads Consul KV: the raw value of a key, None when it does not exist. Raises
    NoConsulError when nothing listens at the address, StateError when Consul cannot be
    asked (a timeout, an ACL refusal, an error status)."""

    async def get(self, key: str) -> bytes | None: ...


@dataclass(frozen=True)
class StatePolicy:
    """What the daemon configuration says about state, resolved once (and at a reload)."""

    configured: Backend | None = None  # driver "terraform" backend, as configured
    consul: Mapping[str, Any] | None = None  # CTS's consul backend, when it is the default
    # CTS's consul backend at its default address, looked at for state CTS left there when
    # Consul is not the default.
    probe: Mapping[str, Any] | None = None
    # CONSUL_HTTP_* for Terraform when the backend is consul (as CTS sets them).
    consul_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> StatePolicy:
        cts = dict(default_backend(settings.consul)["consul"])
        env = consul_environment(settings)
        if settings.consul_from in (CONSUL_BLOCK, CONSUL_ENVIRONMENT):
            return cls(settings.driver.backend, consul=cts, consul_env=env)
        probe = cts if settings.consul_from == CONSUL_DEFAULT else None
        return cls(settings.driver.backend, probe=probe, consul_env=env)


def consul_environment(settings: Settings) -> dict[str, str]:
    """The variables CTS gives Terraform for its consul backend (config.ConsulConfig.Env):
    the address, the token, and the TLS files when TLS is on."""
    consul = settings.consul
    env: dict[str, str] = {}
    if consul.address:
        env["CONSUL_HTTP_ADDR"] = consul.address
    if consul.token:
        env["CONSUL_HTTP_TOKEN"] = consul.token
    tls = consul.tls
    if tls.enabled:
        for name, value in (
            ("CONSUL_CLIENT_CERT", tls.cert),
            ("CONSUL_CACERT", tls.ca_cert),
            ("CONSUL_CAPATH", tls.ca_path),
            ("CONSUL_CLIENT_KEY", tls.key),
        ):
            if value is not None:
                env[name] = str(value)
        if tls.server_name:
            env["CONSUL_TLS_SERVER_NAME"] = tls.server_name
        env["CONSUL_HTTP_SSL"] = "true"
        if not tls.verify:
            env["CONSUL_HTTP_SSL_VERIFY"] = "false"
    return env


@dataclass(frozen=True)
class Placement:
    """Where one task's state lives and how its root module says so."""

    backend: Backend
    workspace: str | None  # the Terraform workspace to select; None: the default one
    where: str  # for people: the file, or the Consul address and key
    why: str
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The workspace was initialised with another backend type whose state is empty or
    # absent: init with -reconfigure (never -migrate-state, which would copy it over).
    reconfigure: bool = False
    warning: str | None = None

    @property
    def kind(self) -> str:
        return next(iter(self.backend))


# --- what a workspace holds ----------------------------------------------------------------


@dataclass(frozen=True)
class StateFile:
    path: Path
    resources: int | None  # managed resource instances; None: present but unreadable

    @property
    def holds(self) -> bool:
        return self.resources is None or self.resources > 0

    def count(self) -> str:
        return "an unreadable state" if self.resources is None else _resources(self.resources)


@dataclass(frozen=True)
class LocalState:
    default: StateFile | None  # <dir>/terraform.tfstate (the default workspace)
    task: StateFile | None  # <dir>/terraform.tfstate.d/<task>/terraform.tfstate
    recorded: Mapping[str, Any] | None  # .terraform/terraform.tfstate: {"type", "config"}

    @property
    def holding(self) -> StateFile | None:
        """The local state file that holds resources, if any (the task's workspace one
        first: that is where CTS's local backend keeps it)."""
        for found in (self.task, self.default):
            if found is not None and found.holds:
                return found
        return None


def _resources(n: int) -> str:
    return f"{n} resource" + ("" if n == 1 else "s")


def count_resources(data: bytes) -> int | None:
    """Managed resource instances in a Terraform state document; None if it is not one."""
    try:
        state = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(state, dict):
        return None
    total = 0
    for resource in state.get("resources") or ():
        if isinstance(resource, dict) and resource.get("mode", "managed") == "managed":
            total += len(resource.get("instances") or ())
    return total


def _state_file(path: Path) -> StateFile | None:
    try:
        info = path.lstat()
    except OSError:
        return None
    if info.st_size == 0:
        return StateFile(path, 0)
    if info.st_size > _MAX_STATE:
        return StateFile(path, None)
    try:
        return StateFile(path, count_resources(path.read_bytes()))
    except OSError:
        return StateFile(path, None)


def inspect_local(directory: Path, task: str) -> LocalState:
    """What the task's workspace directory holds (read without following symlinks out)."""
    recorded = None
    try:
        backend = json.loads((directory / ".terraform" / "terraform.tfstate").read_text())
        found = backend.get("backend") if isinstance(backend, dict) else None
        if isinstance(found, dict) and isinstance(found.get("type"), str):
            recorded = found
    except (OSError, ValueError):
        pass
    return LocalState(
        default=_state_file(directory / "terraform.tfstate"),
        task=_state_file(directory / "terraform.tfstate.d" / task / "terraform.tfstate"),
        recorded=recorded,
    )


# --- state in Consul -----------------------------------------------------------------------


def consul_key(backend: Mapping[str, Any], task: str) -> str:
    return f"{backend.get('path', '')}{ENV_SUFFIX}{task}"


def consul_where(backend: Mapping[str, Any], task: str) -> str:
    return f"Consul KV at {backend.get('address', '')}, key {consul_key(backend, task)}"


def _payload(value: bytes) -> bytes:
    if value.startswith(_GZIP_MAGIC):
        try:
            return gzip.decompress(value)
        except (OSError, EOFError):
            return value
    return value


async def consul_resources(reader: KVReader, key: str) -> int | None:
    """Resource instances in the state stored at `key` (Terraform's layout: one value,
    gzip'd or not, or a JSON index of chunks); None when there is no state there.
    Raises what the reader raises."""
    raw = await reader.get(key)
    if raw is None:
        return None
    payload = _payload(raw)
    try:
        index = orjson.loads(payload)
    except orjson.JSONDecodeError:
        index = None
    if isinstance(index, dict) and "current-hash" in index:
        parts = []
        for chunk in index.get("chunks") or ():
            part = await reader.get(str(chunk))
            if part is None:
                raise StateError(f"the state at {key} names a chunk {chunk} that is missing")
            parts.append(part)
        payload = _payload(b"".join(parts))
    counted = count_resources(payload)
    # A value that is no state document still means "something is there": never ignored.
    return counted if counted is not None else 1


# --- the decision ------------------------------------------------------------------------


def _consul(
    backend: Mapping[str, Any], task: str, policy: StatePolicy, why: str, **extra: Any
) -> Placement:
    return Placement(
        {"consul": dict(backend)},
        task,
        consul_where(backend, task),
        why,
        env=policy.consul_env,
        **extra,
    )


def _local(local: LocalState, directory: Path, task: str, why: str, **extra: Any) -> Placement:
    kept = local.holding
    if kept is not None and kept is local.task:
        return Placement(LOCAL, task, str(kept.path), why, **extra)
    return Placement(LOCAL, None, str(directory / "terraform.tfstate"), why, **extra)


def _configured(policy: StatePolicy, local: LocalState, directory: Path, task: str) -> Placement:
    assert policy.configured is not None
    kind, config = next(iter(policy.configured.items()))
    if kind == "local" and not config.get("path"):
        # CTS selects a workspace per task, so its local state is under
        # terraform.tfstate.d/<task>/; this daemon's earlier runs kept it in the default
        # workspace. Whichever holds state is kept.
        default, mine = local.default, local.task
        if default is not None and default.holds and not (mine is not None and mine.holds):
            return Placement(
                policy.configured, None, str(default.path), 'backend "local" (as configured)'
            )
        return Placement(
            policy.configured,
            task,
            str(directory / "terraform.tfstate.d" / task / "terraform.tfstate"),
            'backend "local" (as configured)',
        )
    if kind == "consul":
        return _consul(config, task, policy, 'backend "consul" (as configured)')
    return Placement(
        policy.configured, task, f'backend "{kind}", workspace "{task}"', "as configured"
    )


async def place(
    policy: StatePolicy, directory: Path, task: str, reader: KVReader | None
) -> Placement:
    """Where the task whose workspace is `directory` keeps its state (see the module
    docstring). Raises StateError when that cannot be decided safely; `reader` None: Consul
    cannot be asked (then only what the workspace holds decides)."""
    local = inspect_local(directory, task)
    if policy.configured is not None:
        return _configured(policy, local, directory, task)
    held = local.holding
    candidate = policy.consul or policy.probe
    in_consul: int | None = None
    consul_answered = False
    if candidate is not None and reader is not None and (held is not None or policy.probe):
        key = consul_key(candidate, task)
        try:
            in_consul = await consul_resources(reader, key)
            consul_answered = True
        except NoConsulError:
            if policy.consul is not None and held is not None:
                raise StateError(
                    f"task {task}: its workspace holds local state ({held.count()} in "
                    f"{held.path}), and whether Consul at {candidate.get('address')} holds "
                    "state for it too cannot be checked: nothing answers there. It runs "
                    "once Consul answers."
                ) from None
    if held is not None:
        if in_consul:
            assert candidate is not None
            raise StateError(
                f"task {task} has Terraform state in two places: {held.count()} in "
                f"{held.path} (an earlier run of this daemon) and {_resources(in_consul)} in "
                f"{consul_where(candidate, task)} (CTS's default backend). It does not run "
                "until one is kept. To keep the Consul state (what CTS built), move the local "
                f"file away: mv {held.path} {held.path}.old. To keep the local one, remove the "
                f"Consul key (consul kv delete '{consul_key(candidate, task)}') or move the "
                f"local state into it (terraform -chdir={directory} init -migrate-state with "
                'backend "consul"); or configure driver "terraform" { backend "local" {} } '
                "for every task."
            )
        warning = None
        if policy.consul is not None:
            warning = (
                f"task {task} keeps its local Terraform state ({held.count()} in {held.path}) "
                "although the default for a daemon that uses Consul is CTS's consul backend; "
                f"to move it: terraform -chdir={directory} init -migrate-state after setting "
                'backend "consul", or configure driver "terraform" { backend "local" {} } to '
                "keep state local on purpose"
            )
        return _local(
            local, directory, task, "its workspace already holds local state", warning=warning
        )
    recorded = (local.recorded or {}).get("type")
    if policy.consul is not None:
        return _consul(
            policy.consul,
            task,
            policy,
            "CTS's default backend (the daemon uses Consul)",
            reconfigure=recorded not in (None, "consul"),
        )
    if in_consul is not None and policy.probe is not None:
        # CTS (no consul block: localhost:8500) left state for this task: use it.
        return _consul(
            policy.probe,
            task,
            policy,
            f"CTS's default backend: Consul holds {_resources(in_consul)} for this task",
            reconfigure=recorded not in (None, "consul"),
        )
    if recorded == "consul":
        config = (local.recorded or {}).get("config") or {}
        same = policy.probe is not None and config.get("address") in (
            None,
            policy.probe.get("address"),
        )
        if not (same and consul_answered):
            address = config.get("address") or "the default address"
            raise StateError(
                f"task {task}: its workspace {directory} was initialised with the consul "
                f"backend (Consul at {address}, path {config.get('path')}), so its state is "
                "probably there, but this daemon has no Consul to keep it in. Configure "
                f'consul {{ address = "{address}" }} (or set CONSUL_HTTP_ADDR) to keep using '
                f"it, or remove {directory / '.terraform'} to start this task on empty local "
                "state."
            )
    return _local(
        local,
        directory,
        task,
        "no Consul is configured" if policy.probe is None else "Consul holds no state for it",
        reconfigure=recorded not in (None, "local"),
    )


def describe(placement: Placement) -> str:
    """One line for the start log and `validate`."""
    backend = f'backend "{placement.kind}"'
    workspace = f', workspace "{placement.workspace}"' if placement.workspace else ""
    return f"{backend}{workspace}: state in {placement.where} ({placement.why})"
