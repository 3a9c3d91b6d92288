"""An in-test server that speaks the part of Consul's HTTP API the client reads.

A real HTTP/1.1 server on a loopback port (plain asyncio, so that stopping it can cut
long polls off exactly as a dying agent does). It holds a mutable catalog and KV store;
every change bumps one raft-like index, which every endpoint reports, so that unrelated
changes wake blocking queries with the same data (as Consul does). Faults on demand:
injected error statuses, answers without X-Consul-Index, an index that goes backwards
(a restored snapshot), no leader, and stop / start on the same port.

JSON field names are Consul's own (consul/api ServiceEntry, Node, AgentService,
HealthCheck, KVPair).
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from fakeserver import LoopbackServer, OnItsOwnLoop, read_request, write_response

T = TypeVar("T")
MAX_WAIT = 600.0  # Consul caps wait at 10 minutes
DEFAULT_WAIT = 300.0


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes = b""

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None

    @property
    def blocking(self) -> bool:
        return self.param("index") not in (None, "0")


@dataclass
class Fault:
    status: int
    body: str
    path: str  # applies to requests whose path starts with this
    times: int


@dataclass
class Instance:
    id: str
    name: str
    node: str
    address: str = ""
    port: int = 0
    tags: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    namespace: str = ""
    status: str = "passing"  # the service check's status
    check_index: int = 0  # the service check's ModifyIndex


@dataclass
class KVEntry:
    value: bytes
    create: int
    modify: int
    flags: int = 0
    session: str = ""  # the session holding the key's lock
    lock_index: int = 0


@dataclass
class Session:
    id: str
    name: str = ""
    ttl: str = ""
    lock_delay: str = ""


@dataclass
class NodeInfo:
    name: str
    id: str
    address: str
    meta: dict[str, str]
    status: str = "passing"  # serfHealth
    check_index: int = 1


class FakeConsul(LoopbackServer):
    def __init__(
        self,
        *,
        datacenter: str = "dc1",
        port: int = 0,
        token: str | None = None,
        namespaces: bool = False,
        tls: ssl.SSLContext | None = None,
        shared_index: bool = True,
    ) -> None:
        super().__init__(port=port, tls=tls)
        self.datacenter = datacenter
        self.token = token  # when set, requests must carry it in X-Consul-Token
        self.namespaces = namespaces  # Enterprise: ns= is accepted
        # True: every endpoint reports the raft index, so any change wakes every blocking
        # query (with unchanged data for most). False: each query reports and blocks on
        # its own index, as Consul does per service, per key and for the service list.
        self.shared_index = shared_index
        self._service_index: dict[str, int] = {}
        self._catalog_index = 1
        self._checks_index = 1  # the checks table (/v1/health/state/any)
        self._kv_index: dict[str, int] = {}  # modify index; a deleted key's is its tombstone
        self._kv_table = 1
        self.index = 1
        self.leader = "127.0.0.1:8300"  # "" = no cluster leader
        self.omit_index = False
        self.bad_index: str | None = None  # sent as X-Consul-Index instead of the index
        self.instances: dict[tuple[str, str], Instance] = {}
        self.nodes: dict[str, NodeInfo] = {}
        self.kv: dict[str, KVEntry] = {}
        self.sessions: dict[str, Session] = {}
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.agent_services: dict[str, Any] = {}  # registered through the agent API
        self.in_flight = 0  # blocked long polls right now
        self.peak_connections = 0  # the most client connections open at once
        self._epoch = 0  # bumped by a snapshot restore
        self._changed = asyncio.Condition()

    # --- lifecycle ---------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Die as an agent does: listening stops, open connections are cut."""
        await super().stop()
        self.in_flight = 0

    # --- the catalog, from tests ---------------------------------------------------

    async def _bump(
        self,
        service: str | None = None,
        *,
        catalog: bool = False,
        checks: Instance | None = None,
        checks_removed: bool = False,
    ) -> None:
        """One raft write: the service's index, the services table (`catalog`), the
        checks table (`checks`: this instance's check changed; `checks_removed`)."""
        self.index += 1
        if service is not None:
            self._service_index[service] = self.index
        if catalog:
            self._catalog_index = self.index
        if checks is not None:
            checks.check_index = self.index
        if checks is not None or checks_removed:
            self._checks_index = self.index
        async with self._changed:
            self._changed.notify_all()

    async def register(
        self,
        name: str,
        *,
        id: str | None = None,
        node: str = "node-1",
        address: str = "",
        port: int = 0,
        tags: list[str] | None = None,
        meta: dict[str, str] | None = None,
        status: str = "passing",
        kind: str = "",
        namespace: str = "",
        node_address: str = "127.0.0.1",
        node_meta: dict[str, str] | None = None,
    ) -> Instance:
        if node not in self.nodes:
            self.nodes[node] = NodeInfo(
                name=node,
                id=f"00000000-0000-0000-0000-{len(self.nodes) + 1:012d}",
                address=node_address,
                meta=node_meta or {"consul-network-segment": ""},
                check_index=self.index + 1,
            )
        existing = self.instances.get((node, id or name))
        inst = Instance(
            id=id or name,
            name=name,
            node=node,
            address=address,
            port=port,
            tags=list(tags or []),
            meta=dict(meta or {}),
            kind=kind,
            namespace=namespace,
            status=status,
        )
        self.instances[(node, inst.id)] = inst
        if existing is not None and existing.status == status:
            # A re-registration with the same check: the check is not written again.
            inst.check_index = existing.check_index
            await self._bump(name, catalog=True)
        else:
            await self._bump(name, catalog=True, checks=inst)
        return inst

    async def deregister(self, id: str, node: str = "node-1") -> None:
        inst = self.instances.pop((node, id))
        await self._bump(inst.name, catalog=True, checks_removed=True)

    async def set_status(self, id: str, status: str, node: str = "node-1") -> None:
        inst = self.instances[(node, id)]
        inst.status = status
        await self._bump(inst.name, checks=inst)

    async def kv_put(self, key: str, value: str | bytes) -> None:
        self._kv_set(key, value.encode() if isinstance(value, str) else value)
        await self._notify()

    async def kv_delete(self, key: str) -> None:
        self._kv_remove(key)
        await self._notify()

    def kv_get(self, key: str) -> bytes | None:
        entry = self.kv.get(key)
        return entry.value if entry is not None else None

    # One raft write each; the callers notify blocked queries once per request.

    def _kv_set(self, key: str, data: bytes, *, flags: int | None = None) -> KVEntry:
        self.index += 1
        old = self.kv.get(key)
        entry = KVEntry(
            data,
            old.create if old is not None else self.index,
            self.index,
            flags if flags is not None else (old.flags if old is not None else 0),
            old.session if old is not None else "",
            old.lock_index if old is not None else 0,
        )
        self.kv[key] = entry
        self._kv_index[key] = self._kv_table = self.index
        return entry

    def _kv_remove(self, key: str) -> None:
        del self.kv[key]
        self.index += 1
        self._kv_index[key] = self._kv_table = self.index

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def touch(self) -> None:
        """A change that concerns no query here (another table, say): the index moves."""
        await self._bump()

    async def restore_snapshot(self, index: int) -> None:
        """The index goes backwards, as after restoring an older snapshot."""
        self.index = index
        self._service_index = {k: min(v, index) for k, v in self._service_index.items()}
        self._kv_index = {k: min(v, index) for k, v in self._kv_index.items()}
        self._catalog_index = min(self._catalog_index, index)
        self._checks_index = min(self._checks_index, index)
        self._kv_table = min(self._kv_table, index)
        self._epoch += 1
        async with self._changed:
            self._changed.notify_all()

    def fail(self, status: int, body: str = "injected", *, path: str = "/", times: int = 1) -> None:
        self.faults.append(Fault(status, body, path, times))

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    # --- HTTP ----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._open(writer):
            self.peak_connections = max(self.peak_connections, len(self._connections))
            try:
                while True:
                    head = await read_request(reader)
                    if head is None:
                        return
                    req = Request(*head)
                    self.requests.append(req)
                    try:
                        status, body, extra = await self._answer(req, reader)
                    except (ConnectionError, asyncio.CancelledError):
                        raise
                    except Exception as exc:  # a bug of this fake: say so, never hang up
                        status, body, extra = 500, f"fake consul: {exc!r}".encode(), {}
                    payload = body if isinstance(body, bytes) else orjson.dumps(body)
                    await write_response(writer, status, payload, extra)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                return
            except asyncio.CancelledError:
                # stop() cuts this connection. Ending normally keeps asyncio's stream
                # callback from logging the cancellation as an error.
                return

    def _query_index(self, req: Request) -> int:
        """The index a query reports and blocks on (Consul never reports less than 1)."""
        if self.shared_index:
            return self.index
        path = req.path
        if path.startswith("/v1/health/service/"):
            name = path.removeprefix("/v1/health/service/")
            index = self._service_index.get(name, self._catalog_index)
        elif path == "/v1/health/state/any":
            index = self._checks_index
        elif path.startswith("/v1/kv/"):
            key = path.removeprefix("/v1/kv/")
            if "recurse" in req.params:
                under = [v for k, v in self._kv_index.items() if k.startswith(key)]
                index = max(under, default=self._kv_table)
            else:
                index = self._kv_index.get(key, self._kv_table)
        else:
            index = self._catalog_index
        return max(1, index)

    def _meta(self, req: Request) -> dict[str, str]:
        meta = {"X-Consul-KnownLeader": "true" if self.leader else "false"}
        meta["X-Consul-LastContact"] = "0"
        if self.bad_index is not None:
            meta["X-Consul-Index"] = self.bad_index
        elif not self.omit_index:
            meta["X-Consul-Index"] = str(self._query_index(req))
        return meta

    async def _answer(
        self, req: Request, reader: asyncio.StreamReader
    ) -> tuple[int, Any, dict[str, str]]:
        if self.token is not None and req.headers.get("x-consul-token") != self.token:
            return 403, b"ACL not found", {}
        if req.path == "/v1/status/leader":
            return 200, self.leader, {}
        if not self.leader:
            return 500, b"No cluster leader", {}
        if req.method == "PUT" and req.path.startswith("/v1/agent/service/"):
            return self._agent(req)
        if req.path.startswith("/v1/session/"):
            return await self._session(req)
        if req.path == "/v1/txn":
            return await self._txn(req)
        if req.method in ("PUT", "DELETE") and req.path.startswith("/v1/kv/"):
            return await self._kv_write(req, req.path.removeprefix("/v1/kv/"))
        dc = req.param("dc")
        if dc not in (None, "", self.datacenter):
            return 500, b"No path to datacenter", {}
        ns = req.param("ns")
        if ns and not self.namespaces:
            return (
                400,
                b'Invalid query parameter: "ns" - Namespaces are a Consul Enterprise feature',
                {},
            )
        await self._block(req, reader)
        # Faults strike when the answer is due, so a woken long poll can fail too.
        for fault in self.faults:
            if fault.times > 0 and req.path.startswith(fault.path):
                fault.times -= 1
                return fault.status, fault.body.encode(), {}
        if req.path.startswith("/v1/health/service/"):
            return self._health(req, req.path.removeprefix("/v1/health/service/"))
        if req.path == "/v1/health/state/any":
            return 200, self._health_state(), self._meta(req)
        if req.path == "/v1/catalog/services":
            return 200, self._catalog(req), self._meta(req)
        if req.path.startswith("/v1/kv/"):
            return self._kv(req, req.path.removeprefix("/v1/kv/"))
        return 404, b"unknown endpoint", {}

    async def _block(self, req: Request, reader: asyncio.StreamReader) -> None:
        """Consul's blocking query: hold the answer while the index is not past the
        one asked for, up to `wait` (an index above the current one waits it out too).
        A snapshot restore wakes every blocked query (Consul abandons its watches), and
        a client that hangs up ends its query (Consul cancels it with the connection)."""
        raw = req.param("index")
        if raw in (None, "0"):
            return
        assert raw is not None
        wanted, epoch = int(raw), self._epoch
        wait = min(parse_duration(req.param("wait") or "") or DEFAULT_WAIT, MAX_WAIT)

        async def changed() -> None:
            async with self._changed:
                await self._changed.wait_for(
                    lambda: self._query_index(req) > wanted or self._epoch != epoch
                )

        self.in_flight += 1
        woken = asyncio.ensure_future(changed())
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            done, _ = await asyncio.wait(
                {woken, hangup}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            self.in_flight -= 1
            for f in (woken, hangup):
                f.cancel()
            await asyncio.gather(woken, hangup, return_exceptions=True)
        if hangup in done:
            raise ConnectionResetError("the client hung up during a blocking query")

    def _entry(self, inst: Instance) -> dict[str, Any]:
        node = self.nodes[inst.node]
        tagged = {
            "lan": node.address,
            "lan_ipv4": node.address,
            "wan": node.address,
            "wan_ipv4": node.address,
        }
        service: dict[str, Any] = {
            "Kind": inst.kind,
            "ID": inst.id,
            "Service": inst.name,
            "Tags": inst.tags or None,  # Consul sends null for no tags
            "Address": inst.address,
            "Meta": inst.meta or None,
            "Port": inst.port,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "CreateIndex": 10,
            "ModifyIndex": 10,
        }
        if inst.namespace:
            service["Namespace"] = inst.namespace
        checks = self._checks(inst)
        return {
            "Node": {
                "ID": node.id,
                "Node": node.name,
                "Address": node.address,
                "Datacenter": self.datacenter,
                "TaggedAddresses": tagged,
                "Meta": node.meta,
                "CreateIndex": 5,
                "ModifyIndex": 5,
            },
            "Service": service,
            "Checks": checks,
        }

    def _checks(self, inst: Instance) -> list[dict[str, Any]]:
        """The node's serfHealth and the instance's own check, as consul/api HealthCheck."""
        node = self.nodes[inst.node]
        return [self._node_check(node), self._service_check(inst)]

    def _node_check(self, node: NodeInfo) -> dict[str, Any]:
        return {
            "Node": node.name,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": node.status,
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": "",
            "CreateIndex": 1,
            "ModifyIndex": node.check_index,
        }

    def _service_check(self, inst: Instance) -> dict[str, Any]:
        return {
            "Node": inst.node,
            "CheckID": f"service:{inst.id}",
            "Name": f"Service '{inst.name}' check",
            "Status": inst.status,
            "Notes": "",
            "Output": "",
            "ServiceID": inst.id,
            "ServiceName": inst.name,
            "ServiceTags": inst.tags,
            "Type": "ttl",
            "CreateIndex": inst.check_index,
            "ModifyIndex": inst.check_index,
        }

    def _health_state(self) -> list[dict[str, Any]]:
        """`/v1/health/state/any`: every check of the datacenter."""
        checks = [self._node_check(n) for n in self.nodes.values()]
        checks += [self._service_check(i) for i in self.instances.values()]
        return sorted(checks, key=lambda c: (c["Node"], c["CheckID"]))

    def _health(self, req: Request, name: str) -> tuple[int, Any, dict[str, str]]:
        entries = [self._entry(i) for i in self.instances.values() if i.name == name]
        passing = req.param("passing")
        if passing is not None and passing.lower() not in ("false", "0"):
            entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
        expr = req.param("filter")
        if expr:
            try:
                match = compile_filter(expr)
            except FilterError as err:
                body = f"Failed to create boolean expression evaluator: {err}"
                return 400, body.encode(), {}
            entries = [e for e in entries if match(e)]
        return 200, entries, self._meta(req)

    def _agent(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        """PUT /v1/agent/service/register and /deregister/<id>."""
        for fault in self.faults:
            if fault.times > 0 and req.path.startswith(fault.path):
                fault.times -= 1
                return fault.status, fault.body.encode(), {}
        if req.path == "/v1/agent/service/register":
            service = orjson.loads(req.body)
            self.agent_services[service["ID"]] = service
            return 200, b"", {}
        id = req.path.removeprefix("/v1/agent/service/deregister/")
        if self.agent_services.pop(id, None) is None:
            return 404, f'Unknown service ID "{id}"'.encode(), {}
        return 200, b"", {}

    def _catalog(self, req: Request) -> dict[str, list[str]]:
        wanted = [m.split(":", 1) for m in req.params.get("node-meta", [])]
        out: dict[str, set[str]] = {}
        for inst in self.instances.values():
            meta = self.nodes[inst.node].meta
            if all(meta.get(k) == v for k, v in wanted):
                out.setdefault(inst.name, set()).update(inst.tags)
        return {name: sorted(tags) for name, tags in sorted(out.items())}

    def _pair(self, key: str, entry: KVEntry, *, value: bool = True) -> dict[str, Any]:
        """consul/api KVPair."""
        pair: dict[str, Any] = {
            "LockIndex": entry.lock_index,
            "Key": key,
            "Flags": entry.flags,
            "Value": base64.b64encode(entry.value).decode() if value and entry.value else None,
            "CreateIndex": entry.create,
            "ModifyIndex": entry.modify,
        }
        if entry.session:
            pair["Session"] = entry.session
        return pair

    def _kv(self, req: Request, key: str) -> tuple[int, Any, dict[str, str]]:
        if "keys" in req.params:
            # Key names under the prefix, cut after the separator (Consul's ?keys).
            separator = req.param("separator") or ""
            names: set[str] = set()
            for k in self.kv:
                if not k.startswith(key):
                    continue
                cut = k.find(separator, len(key)) if separator else -1
                names.add(k if cut < 0 else k[: cut + len(separator)])
            if not names:
                return 404, b"", self._meta(req)
            return 200, sorted(names), self._meta(req)
        if "recurse" in req.params:
            keys = sorted(k for k in self.kv if k.startswith(key))
        else:
            keys = [key] if key in self.kv else []
        if not keys:
            return 404, b"", self._meta(req)
        return 200, [self._pair(k, self.kv[k]) for k in keys], self._meta(req)

    async def _kv_write(self, req: Request, key: str) -> tuple[int, Any, dict[str, str]]:
        """PUT /v1/kv/<key> (?cas, ?flags, ?acquire, ?release) and DELETE (?recurse,
        ?cas): the answer is `true` or `false`, as Consul's."""
        entry = self.kv.get(key)
        cas = req.param("cas")
        if cas is not None:
            expected = int(cas)
            current = entry.modify if entry is not None else 0
            if current != expected:
                return 200, False, {}
        if req.method == "DELETE":
            doomed = [k for k in self.kv if k.startswith(key)] if "recurse" in req.params else []
            if not doomed and entry is not None:
                doomed = [key]
            for k in doomed:
                self._kv_remove(k)
            await self._notify()
            return 200, True, {}
        flags = int(req.param("flags")) if req.param("flags") is not None else None
        acquire, release = req.param("acquire"), req.param("release")
        if acquire is not None:
            if acquire not in self.sessions:
                return 500, f'invalid session "{acquire}"'.encode(), {}
            if entry is not None and entry.session and entry.session != acquire:
                return 200, False, {}
            new = self._kv_set(key, req.body, flags=flags)
            if new.session != acquire:
                new.lock_index += 1
            new.session = acquire
        elif release is not None:
            if entry is None or entry.session != release:
                return 200, False, {}
            new = self._kv_set(key, req.body if req.body else entry.value, flags=flags)
            new.session = ""
        else:
            self._kv_set(key, req.body, flags=flags)
        await self._notify()
        return 200, True, {}

    async def _session(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        """/v1/session/create, renew/<id>, destroy/<id>, info/<id>."""
        verb, _, sid = req.path.removeprefix("/v1/session/").partition("/")
        if verb == "create" and req.method == "PUT":
            body = orjson.loads(req.body) if req.body else {}
            session = Session(
                str(uuid.uuid4()),
                str(body.get("Name", "")),
                str(body.get("TTL", "")),
                str(body.get("LockDelay", "")),  # a duration string ("5000ms")
            )
            self.sessions[session.id] = session
            return 200, {"ID": session.id}, {}
        session_entry = self.sessions.get(sid)
        if verb == "renew" and req.method == "PUT":
            if session_entry is None:
                return 404, f"Session id '{sid}' not found".encode(), {}
            return 200, [self._session_json(session_entry)], {}
        if verb == "destroy" and req.method == "PUT":
            self.sessions.pop(sid, None)
            released = False
            for key, entry in self.kv.items():  # Consul's default behavior: release
                if entry.session == sid:
                    entry.session = ""
                    self.index += 1
                    entry.modify = self._kv_index[key] = self.index
                    released = True
            if released:
                self._kv_table = self.index
                await self._notify()
            return 200, True, {}
        if verb == "info":
            found = [self._session_json(session_entry)] if session_entry else []
            return 200, found, self._meta(req)
        return 404, b"unknown endpoint", {}

    def _session_json(self, session: Session) -> dict[str, Any]:
        return {
            "ID": session.id,
            "Name": session.name,
            "Node": "node-1",
            "LockDelay": session.lock_delay,
            "Behavior": "release",
            "TTL": session.ttl,
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    async def _txn(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        """PUT /v1/txn with KV operations, all or nothing (Consul's transaction API)."""
        ops = orjson.loads(req.body)
        errors: list[dict[str, Any]] = []
        for i, op in enumerate(ops):
            kv = op.get("KV") or {}
            entry = self.kv.get(kv.get("Key", ""))
            verb = kv.get("Verb")
            if verb in ("cas", "delete-cas", "check-index"):
                current = entry.modify if entry is not None else 0
                if current != int(kv.get("Index") or 0):
                    what = f'failed to set key "{kv.get("Key")}", index is stale'
                    errors.append({"OpIndex": i, "What": what})
            elif verb in ("get", "check-not-exists") and (entry is None) == (verb == "get"):
                errors.append({"OpIndex": i, "What": f'key "{kv.get("Key")}" check failed'})
            elif verb not in ("set", "delete", "delete-tree"):
                errors.append({"OpIndex": i, "What": f"unsupported verb {verb!r}"})
        if errors:
            return 409, {"Results": None, "Errors": errors}, {}
        results = []
        for op in ops:
            kv = op["KV"]
            key, verb = kv.get("Key", ""), kv["Verb"]
            if verb in ("set", "cas"):
                value = base64.b64decode(kv.get("Value") or "")
                flags = kv.get("Flags")
                written = self._kv_set(key, value, flags=int(flags) if flags else None)
                results.append({"KV": self._pair(key, written, value=False)})
            elif verb in ("delete", "delete-cas"):
                if key in self.kv:
                    self._kv_remove(key)
            elif verb == "delete-tree":
                for k in [k for k in self.kv if k.startswith(key)]:
                    self._kv_remove(k)
            elif verb == "get":
                results.append({"KV": self._pair(key, self.kv[key])})
        await self._notify()
        return 200, {"Results": results, "Errors": None}, {"X-Consul-Index": str(self.index)}


def parse_duration(text: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    if not m:
        return None
    return float(m[1]) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m[2]]


class FilterError(ValueError):
    pass


_CLAUSE = re.compile(r'\s*([A-Za-z.\-_]+)\s+(==|!=|not contains|contains)\s+"((?:[^"\\]|\\.)*)"\s*')
_SELECTORS = ("Service.", "Node.", "Checks.")


def compile_filter(expr: str) -> Any:
    """The bit of go-bexpr the tests use: `Selector op "value"` clauses joined by `and`;
    a selector over Checks matches when any check does."""
    clauses = []
    for part in expr.split(" and "):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise FilterError(f"1:1 (0): no match found, expected a clause in {part!r}")
        selector, op, value = m[1], m[2], m[3]
        if not selector.startswith(_SELECTORS):
            raise FilterError(f'Selector "{selector}" is not valid')
        clauses.append((selector.split("."), op, value))

    def values(entry: dict[str, Any], path: list[str]) -> list[Any]:
        if path[0] == "Checks":
            return [c.get(path[1]) for c in entry["Checks"]]
        cur: Any = entry
        for p in path:
            cur = cur.get(p) if isinstance(cur, dict) else None
        return [cur]

    def match(entry: dict[str, Any]) -> bool:
        for path, op, value in clauses:
            got = values(entry, path)
            if op == "==":
                ok = any(str(g) == value for g in got if g is not None)
            elif op == "!=":
                ok = any(str(g) != value for g in got if g is not None)
            else:
                inside = any(value in (g or []) for g in got)
                ok = inside if op == "contains" else not inside
            if not ok:
                return False
        return True

    return match


class ThreadedConsul(OnItsOwnLoop[FakeConsul]):
    """The in-test Consul server on an event loop of its own, for a test that is not
    async (the daemon, or Terraform, is another process)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(FakeConsul(**options))
