"""The embedded catalog: service instances and KV entries kept as files, served in-process
through Consul's HTTP API (`ConsulAPI`), so the same watchers, conversions and trigger
rules run on it as on a real Consul agent.

Layout of the catalog directory:

- `*.hcl` / `*.json` files (anywhere except under `kv/`): service instances in Consul's
  service-definition format, `service { name id address port tags meta }` (several
  blocks per file allowed), plus `status = "passing" | "warning" | "critical"`
  (default passing);
- `kv/<key>`: a KV entry; the path below `kv/` is the key, the file's bytes its value.

Every edit is a catalog change: a watchdog observer hints, and after a quiet period
(`debounce`, as for task files) the directory is read again in a worker thread. A file
that cannot be read keeps its last good content, and the problem (file:line) is logged
and listed in `problems`. The catalog's one index moves on every change, and blocking
queries (`index` > 0) wait for it, as Consul's do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler._core.errors import ConfigError, Location, Problem
from reconciler.consul.client import ConsulHTTPError, Params, Response
from reconciler.taskfiles.hcl import Body, parse
from reconciler.taskfiles.jsonsyntax import Schema, parse_json

log = logging.getLogger("reconciler.consul")

DATACENTER = "dc1"
NODE = "local"
STATUSES = ("passing", "warning", "critical")
MAX_FILE_BYTES = 512 * 1024
SERVICE_FIELDS = {"name", "id", "address", "port", "tags", "meta", "status", "kind"}
_JSON_SCHEMA: Schema = {"service": (0, {}), "services": (0, {})}


@dataclass(frozen=True)
class CatalogService:
    name: str
    id: str
    address: str = ""
    port: int = 0
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()
    status: str = "passing"
    kind: str = ""


@dataclass(frozen=True)
class CatalogState:
    """One immutable reading of the directory."""

    services: tuple[CatalogService, ...] = ()
    kv: Mapping[str, bytes] = field(default_factory=dict)


# --- reading the files ---------------------------------------------------------------------


def _service(block: Body, file: str, line: int) -> CatalogService:
    values: dict[str, Any] = {}
    for attr in block.attributes:
        if attr.name not in SERVICE_FIELDS:
            known = ", ".join(sorted(SERVICE_FIELDS))
            raise _bad(f'unsupported service field "{attr.name}" (known: {known})', file, attr.line)
        values[attr.name] = attr.value
    name = values.get("name")
    if not isinstance(name, str) or not name:
        raise _bad('a service needs a "name"', file, line)
    status = values.get("status", "passing")
    if status not in STATUSES:
        raise _bad(f'status must be one of {", ".join(STATUSES)}, not "{status}"', file, line)
    port = values.get("port", 0)
    tags = values.get("tags", [])
    meta = values.get("meta", {})
    if not isinstance(port, int) or not isinstance(tags, list) or not isinstance(meta, dict):
        raise _bad("port must be a number, tags a list and meta a map", file, line)
    return CatalogService(
        name=name,
        id=str(values.get("id") or name),
        address=str(values.get("address", "")),
        port=port,
        tags=tuple(str(t) for t in tags),
        meta=tuple(sorted((str(k), str(v)) for k, v in meta.items())),
        status=str(status),
        kind=str(values.get("kind", "")),
    )


def _bad(message: str, file: str, line: int) -> ConfigError:
    return ConfigError(Problem(message, location=Location(file, line)))


def read_service_file(path: Path, shown: str) -> tuple[CatalogService, ...]:
    """The services one file defines; raises ConfigError (file:line)."""
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise _bad(f"file is larger than {MAX_FILE_BYTES} bytes", shown, 1)
    body = parse_json(data, shown, _JSON_SCHEMA) if path.suffix == ".json" else parse(data, shown)
    out: list[CatalogService] = []
    for block in body.blocks:
        if block.type not in ("service", "services"):
            raise _bad(f'unexpected block "{block.type}": expected "service"', shown, block.line)
        out.append(_service(block.body, shown, block.line))
    for attr in body.attributes:
        raise _bad(
            f'unexpected attribute "{attr.name}": expected "service" blocks', shown, attr.line
        )
    return tuple(out)


class CatalogFiles:
    """Reads the directory; remembers each file's last good content. Thread-confined to
    whoever calls `read` (one reader at a time)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._good: dict[str, tuple[CatalogService, ...]] = {}
        self._stamps: dict[str, tuple[int, int]] = {}
        self.problems: dict[str, str] = {}

    def read(self) -> CatalogState:
        services: dict[str, tuple[CatalogService, ...]] = {}
        kv: dict[str, bytes] = {}
        kv_root = self.root / "kv"
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or name.endswith("~"):
                    continue  # editors' temporary files
                path = here / name
                if here == kv_root or kv_root in here.parents:
                    with contextlib.suppress(OSError):
                        kv[path.relative_to(kv_root).as_posix()] = path.read_bytes()
                elif name.endswith((".hcl", ".json")):
                    rel = path.relative_to(self.root).as_posix()
                    services[rel] = self._services(path, rel)
        for gone in set(self._good) - set(services):
            self._good.pop(gone, None)
            self._stamps.pop(gone, None)
            self.problems.pop(gone, None)
        flat = tuple(s for rel in sorted(services) for s in services[rel])
        return CatalogState(flat, kv)

    def _services(self, path: Path, rel: str) -> tuple[CatalogService, ...]:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if self._stamps.get(rel) == stamp and rel in self._good:
                return self._good[rel]
            found = read_service_file(path, str(path))
        except (OSError, ConfigError) as exc:
            message = str(exc) if isinstance(exc, ConfigError) else f"{path}: {exc}"
            if self.problems.get(rel) != message:
                log.error("catalog: %s (the file's last good content is kept)", message)
            self.problems[rel] = message
            return self._good.get(rel, ())
        self._good[rel], self._stamps[rel] = found, stamp
        if self.problems.pop(rel, None) is not None:
            log.info("catalog: %s is valid again", path)
        return found


# --- the in-process Consul API -------------------------------------------------------------


class DirectoryCatalog:
    """An in-process `ConsulAPI` answering from a catalog directory. The event loop owns
    it; the files are read in a worker thread."""

    def __init__(self, root: Path, *, debounce: float = 0.05, wait: float = 300.0) -> None:
        self.root = root
        self.debounce = debounce
        self.default_wait = wait
        self.files = CatalogFiles(root)
        self.state = CatalogState()
        self.index = 1
        self._changed = asyncio.Event()
        self._observer: Any = None
        self._hint: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Read the directory, then follow its changes."""
        self.root.mkdir(parents=True, exist_ok=True)
        await self.refresh()
        loop = asyncio.get_running_loop()
        hint = self._hint = asyncio.Event()

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.event_type not in ("opened", "closed_no_write"):
                    loop.call_soon_threadsafe(hint.set)

        observer = Observer()
        observer.schedule(Handler(), str(self.root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._task = loop.create_task(self._follow(hint), name="catalog")

    async def _follow(self, hint: asyncio.Event) -> None:
        while True:
            await hint.wait()
            hint.clear()
            while True:  # a quiet period: editors write in several steps
                try:
                    async with asyncio.timeout(self.debounce):  # not wait_for: see loop.py
                        await hint.wait()
                    hint.clear()
                except TimeoutError:
                    break
            try:
                await self.refresh()
            except Exception:  # keep following: the next edit may repair it
                log.exception("catalog: reading %s failed", self.root)

    async def refresh(self) -> None:
        """Read the directory again; a different state moves the index and wakes the
        blocking queries."""
        state = await asyncio.to_thread(self._read)
        if state != self.state:
            self.state = state
            self.index += 1
            self._changed.set()
            self._changed = asyncio.Event()

    def _read(self) -> CatalogState:
        with self._lock:
            return self.files.read()

    def problems(self) -> list[str]:
        return sorted(self.files.problems.values())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._observer is not None:
            observer, self._observer = self._observer, None
            observer.stop()
            await asyncio.to_thread(observer.join, 5)

    # --- ConsulAPI -----------------------------------------------------------------------

    async def leader(self) -> str:
        return "127.0.0.1:8300"  # in-process: always a leader

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
        what = what or path
        query = _params(params)
        _check_scope(query, what)
        if index > 0 and self.index <= index:
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.default_wait if wait is None else wait):
                    await changed.wait()
        state, current = self.state, self.index
        if path.startswith("/v1/health/service/"):
            body: Any = self._health(
                state, unquote(path.removeprefix("/v1/health/service/")), query, what
            )
        elif path == "/v1/catalog/services":
            body = self._catalog(state, query)
        elif path.startswith("/v1/kv/"):
            body = self._kv(state, unquote(path.removeprefix("/v1/kv/")), query)
            if body is None and not not_found_ok:
                raise ConsulHTTPError(404, "", what)
        else:
            raise ConsulHTTPError(404, f"the embedded catalog does not serve {path}", what)
        return Response(body=body, index=current)

    def _health(
        self, state: CatalogState, name: str, query: Mapping[str, list[str]], what: str
    ) -> list[dict[str, Any]]:
        if query.get("filter"):
            raise ConsulHTTPError(
                400, "filter expressions are not supported by the embedded catalog", what
            )
        entries = [_entry(s) for s in state.services if s.name == name]
        if "passing" in query and query["passing"][-1].lower() not in ("0", "false"):
            entries = [e for e in entries if e["Checks"][1]["Status"] == "passing"]
        return entries

    def _catalog(self, state: CatalogState, query: Mapping[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {}
        for s in state.services:
            out.setdefault(s.name, set()).update(s.tags)
        return {name: sorted(tags) for name, tags in sorted(out.items())}

    def _kv(
        self, state: CatalogState, key: str, query: Mapping[str, list[str]]
    ) -> list[dict[str, Any]] | None:
        if "recurse" in query:
            keys = sorted(k for k in state.kv if k.startswith(key))
        else:
            keys = [key] if key in state.kv else []
        if not keys:
            return None
        return [
            {
                "LockIndex": 0,
                "Key": k,
                "Flags": 0,
                "Value": base64.b64encode(state.kv[k]).decode() if state.kv[k] else None,
                "CreateIndex": self.index,
                "ModifyIndex": self.index,
            }
            for k in keys
        ]


def _params(params: Params) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in params:
        out.setdefault(name, []).append(value)
    return out


def _check_scope(query: Mapping[str, list[str]], what: str) -> None:
    """The embedded catalog is one datacenter without namespaces: asking for another is
    answered as Consul answers it."""
    dc = (query.get("dc") or [""])[-1]
    if dc and dc != DATACENTER:
        raise ConsulHTTPError(500, f'No path to datacenter "{dc}"', what)
    ns = (query.get("ns") or [""])[-1]
    if ns and ns != "default":
        raise ConsulHTTPError(
            400, f'the embedded catalog has no namespaces (asked for "{ns}")', what
        )


def _entry(s: CatalogService) -> dict[str, Any]:
    node: dict[str, Any] = {
        "ID": "00000000-0000-0000-0000-000000000001",
        "Node": NODE,
        "Address": "127.0.0.1",
        "Datacenter": DATACENTER,
        "TaggedAddresses": {"lan": "127.0.0.1", "wan": "127.0.0.1"},
        "Meta": {},
    }
    service = {
        "Kind": s.kind,
        "ID": s.id,
        "Service": s.name,
        "Tags": list(s.tags) or None,
        "Address": s.address,
        "Meta": dict(s.meta) or None,
        "Port": s.port,
    }
    checks = [
        {"Node": NODE, "CheckID": "serfHealth", "Status": "passing", "ServiceID": ""},
        {"Node": NODE, "CheckID": f"service:{s.id}", "Status": s.status, "ServiceID": s.id},
    ]
    return {"Node": node, "Service": service, "Checks": checks}


def default_catalog_path(config_files: Sequence[str]) -> Path | None:
    """`catalog` next to the first configuration file: the default when no consul block
    and no catalog block is configured (used only if that directory exists)."""
    if not config_files:
        return None
    return Path(config_files[0]).absolute().parent / "catalog"
