"""High availability: the members of a cluster elect one leader in etcd, and share what
was applied (and, with `shard_runs`, the runs themselves).

Keys, under `<parent_path>/<cluster name>/`: `members/<id>` for each live member and
`leader` for the leader, each holding `{"id", "address"}` and attached to its member's
lease (session) of `session_ttl`: a member that dies or is cut off loses both when the
lease expires, and revoking the lease at shutdown hands leadership over at once.
`applied/<task>` holds the digest of the task's last successful apply (no lease: it
outlives members), `locks/<task>` the member running the task (on its lease, sharded
runs only; see `claim`).

One loop per member, every `session_ttl / 3`: renew the lease, then campaign (create the
leader key if it is absent, in one transaction) or, as leader, check the key is still ours;
and read the members. The term is the revision that created the leader key: it only grows.

**Fencing.** Leadership holds until the time the last successful renewal was *sent* plus
the seconds the lease had left: etcd received that renewal later, so the lease cannot
expire, and no other member can win, before then. `gate()` compares against that deadline
on every call, so the leader stops accepting writes and starting runs the moment it can no
longer be sure, without waiting for its loop to notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from reconciler.coordination.etcd import Etcd, EtcdError, KeyValue
from reconciler.coordination.shards import owner
from reconciler.runs.queue import Claim
from reconciler.settings.model import SECOND, HighAvailabilitySettings

log = logging.getLogger(__name__)

NOT_CONNECTED = "not connected to etcd yet"


@dataclass(frozen=True)
class Member:
    id: str
    address: str
    healthy: bool
    leader: bool


def _describe(member_id: str, address: str) -> bytes:
    return json.dumps({"id": member_id, "address": address}).encode()


def _read(kv: KeyValue) -> tuple[str, str]:
    try:
        data = json.loads(kv.value)
        return str(data["id"]), str(data.get("address", ""))
    except (ValueError, KeyError, TypeError):
        return kv.value.decode(errors="replace"), ""


class Cluster:
    def __init__(
        self,
        settings: HighAvailabilitySettings,
        member_id: str,
        *,
        etcd: Etcd | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
        on_members: Callable[[tuple[str, ...], tuple[str, ...]], None] | None = None,
    ) -> None:
        """`on_change(leading)` is called in the event loop when this member becomes
        leader or stops being one; `on_members(before, now)` when the ids of the live
        members change (runs spread over them move)."""
        self._on_members = on_members
        self._member_ids: tuple[str, ...] = ()
        self.settings = settings
        self.id = member_id
        self.ttl = max(1, settings.session_ttl // SECOND)  # etcd leases are whole seconds
        self.interval = self.ttl / 3
        tls = settings.tls if any(e.startswith("https://") for e in settings.endpoints) else None
        self._etcd = etcd or Etcd(settings.endpoints, tls=tls, timeout=max(0.5, self.interval))
        self._clock = clock
        self._on_change = on_change
        self._lease = 0
        self._leading = False
        self._valid_until = 0.0  # on `clock`: leadership is certain until then
        self.term = 0  # the revision that created our leader key, while leading
        self.leader: tuple[str, str] | None = None  # (id, address) as last read
        self.members: list[Member] = []
        self.problem: str | None = NOT_CONNECTED
        self.elections = 0  # times this member became leader
        self._unpublished: dict[str, str | None] = {}
        self._publisher: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.settings.cluster_name

    @property
    def _leader_key(self) -> str:
        return self.settings.prefix + "leader"

    @property
    def _members_prefix(self) -> str:
        return self.settings.prefix + "members/"

    @property
    def _applied_prefix(self) -> str:
        return self.settings.prefix + "applied/"

    # --- what the leader applied, shared -------------------------------------------------

    async def _publish_now(self, task: str) -> None:
        """Write what `task` applied (if it changed) and forget it. Sharded runs call it
        before the task's lock is released: the next member to run it must see it."""
        if task not in self._unpublished:
            return
        digest = self._unpublished.pop(task)
        if digest is None:
            await self._etcd.delete(self._applied_prefix + task)
        else:
            await self._etcd.put(self._applied_prefix + task, digest.encode())

    def publish_applied(self, task: str, digest: str | None) -> None:
        """Record what `task` has applied (None: nothing certain, after a failure), for the
        next leader. Written in the background, the latest value per task, in order."""
        self._unpublished[task] = digest
        if self.settings.shard_runs:
            return  # written by the run's claim, before it releases the task's lock
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish())

    async def _publish(self) -> None:
        while self._unpublished:
            task = next(iter(self._unpublished))
            try:
                await self._publish_now(task)
            except EtcdError as exc:
                # The next leader applies this task once more: safe, only slower.
                log.warning("ha: could not record what task %s applied: %s", task, exc)

    async def applied(self) -> dict[str, str]:
        """task -> the digest of what the cluster last applied for it."""
        found = await self._etcd.get_prefix(self._applied_prefix)
        start = len(self._applied_prefix)
        return {kv.key[start:]: kv.value.decode() for kv in found}

    # --- what the daemon asks --------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._leading and self._clock() < self._valid_until

    def gate(self) -> str | None:
        """None while this member is the leader; else why it must not write or run."""
        return None if self.is_leader() else self.redirect_message()

    def redirect_message(self) -> str:
        """What a follower answers to /v1/tasks requests (CTS's wording)."""
        leader = self.leader
        if leader is None or leader[0] == self.id:
            return "redirect requests to leader"
        member_id, address = leader
        if address:
            return f"redirect requests to leader '{member_id}' at {address}"
        return f"redirect requests to leader '{member_id}'"

    def status(self) -> dict[str, object]:
        """`GET /v1/status/cluster`: as CTS documents it."""
        members = self.members or [Member(self.id, self.settings.address, False, False)]
        return {
            "cluster_name": self.name,
            "members": [
                {"id": m.id, "address": m.address, "healthy": m.healthy, "leader": m.leader}
                for m in sorted(members, key=lambda m: m.id)
            ],
        }

    def role(self) -> dict[str, object]:
        """For /v1/health: this member's role and the leader it knows of."""
        return {
            "id": self.id,
            "role": "leader" if self.is_leader() else "follower",
            "leader": self.leader[0] if self.leader is not None else None,
            "term": self.term if self.is_leader() else None,
        }

    # --- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """The member's root task: a session with etcd, started again whenever it ends."""
        while True:
            try:
                await self._session()
            except EtcdError as exc:
                self._lost(str(exc))
            except Exception as exc:
                # A bug or an answer we cannot read must not end the member: it follows
                # (and fences itself) until a fresh session works.
                log.exception("ha: the session with etcd failed")
                self._lost(f"unexpected error: {exc!r}")
            # A fresh session, a fraction of the TTL later (etcd may be restarting).
            await asyncio.sleep(min(1.0, self.interval))

    async def _session(self) -> None:
        sent = self._clock()
        self._lease = await self._etcd.grant(self.ttl)
        self._valid_until = sent + self.ttl
        await self._etcd.put(
            self._members_prefix + self.id,
            _describe(self.id, self.settings.address),
            lease=self._lease,
        )
        if self.problem is not None:
            log.info("ha: joined cluster %s as %s (session of %d s)", self.name, self.id, self.ttl)
        self.problem = None
        while True:
            if self._leading:
                await self._check_leadership()
            else:
                await self._campaign()
            await self._read_members()
            await asyncio.sleep(self.interval)
            sent = self._clock()
            left = await self._etcd.keep_alive(self._lease)
            if left <= 0:
                raise EtcdError(f"the session (lease {self._lease:x}) expired")
            self._valid_until = sent + left

    async def _campaign(self) -> None:
        revision, existing = await self._etcd.create(
            self._leader_key, _describe(self.id, self.settings.address), lease=self._lease
        )
        if existing is not None:
            leader = _read(existing)
            if leader != self.leader:
                log.info("ha: following leader %s (%s)", leader[0], leader[1] or "no address")
            self.leader = leader
            return
        self.leader = (self.id, self.settings.address)
        self.term = revision
        self._leading = True
        self.elections += 1
        log.info("ha: acquired leadership lock: id=%s", self.id)
        log.info("ha: leader term %d", revision)
        if self._on_change is not None:
            self._on_change(True)

    async def _check_leadership(self) -> None:
        kv = await self._etcd.get(self._leader_key)
        if kv is None or kv.lease != self._lease:
            self._step_down("the leader key is gone or held by another session")

    async def _read_members(self) -> None:
        found = await self._etcd.get_prefix(self._members_prefix)
        leader = self.leader[0] if self.leader is not None else None
        members = []
        for kv in found:
            member_id, address = _read(kv)
            members.append(Member(member_id, address, True, member_id == leader))
        self.members = members
        self._set_member_ids(tuple(sorted(m.id for m in members)))

    def _set_member_ids(self, ids: tuple[str, ...]) -> None:
        before, self._member_ids = self._member_ids, ids
        if ids != before:
            log.info("ha: members: %s", ", ".join(ids) or "none")
            if self._on_members is not None:
                self._on_members(before, ids)

    # --- runs spread over the members (shard_runs) ---------------------------------------

    def owner_of(self, task: str) -> str | None:
        """The member that runs `task` (None while this member knows no members)."""
        return owner(task, self._member_ids)

    def owns(self, task: str, members: tuple[str, ...] | None = None) -> bool:
        ids = self._member_ids if members is None else members
        return owner(task, ids) == self.id

    @contextlib.asynccontextmanager
    async def claim(self, task: str, background: bool) -> AsyncIterator[Claim]:
        """Held around one run: the task's lock in etcd, on this member's lease, so that
        no other member runs the task meanwhile. A background run also needs this member
        to own the task. If the session could expire while the run holds the lock (this
        member is cut off from etcd), the run is stopped first: after the lease expires
        another member may take the lock, and the two must never overlap."""
        if not self._session_valid():
            yield Claim(refusal=f"not in the cluster: {self.problem or 'no session'}")
            return
        if background and not self.owns(task):
            yield Claim(refusal=f"task {task} runs on member {self.owner_of(task)}")
            return
        key = self.settings.prefix + "locks/" + task
        try:
            _, holder = await self._etcd.create(
                key, _describe(self.id, self.settings.address), lease=self._lease
            )
            applied = await self._etcd.get(self._applied_prefix + task)
        except EtcdError as exc:
            yield Claim(refusal=f"cannot lock task {task} in etcd: {exc}")
            return
        if holder is not None:
            yield Claim(refusal=f"task {task} is running on member {_read(holder)[0]}")
            return
        run = asyncio.current_task()
        assert run is not None
        fence = asyncio.get_running_loop().create_task(self._fence(task, run))
        try:
            yield Claim(applied=applied.value.decode() if applied is not None else None)
        finally:
            fence.cancel()
            try:
                await self._publish_now(task)
                await self._etcd.delete(key)
            except EtcdError as exc:  # the lock goes with the lease
                log.warning("ha: task %s: could not release its lock: %s", task, exc)

    def _session_valid(self) -> bool:
        return self._lease != 0 and self.problem is None and self._clock() < self._valid_until

    async def _fence(self, task: str, run: asyncio.Task[object]) -> None:
        margin = self.interval / 2
        while True:
            left = self._valid_until - self._clock() - margin
            if left <= 0:
                log.error(
                    "ha: task %s: the session may expire before the run ends (cut off from "
                    "etcd): stopping the run",
                    task,
                )
                run.cancel()
                return
            await asyncio.sleep(min(left, self.interval))

    def _lost(self, reason: str) -> None:
        if self.problem != reason:
            log.error("ha: cannot reach etcd: %s", reason)
        self.problem = reason
        self._step_down(reason)
        self.leader = None
        self.members = []
        self._set_member_ids(())

    def _step_down(self, reason: str) -> None:
        if not self._leading:
            return
        self._leading = False
        self.term = 0
        self.leader = None
        log.warning("ha: released leadership: %s", reason)
        if self._on_change is not None:
            self._on_change(False)

    async def close(self) -> None:
        """Leave the cluster: revoking the lease deletes our keys, so another member can
        take over at once instead of after the TTL."""
        if self._publisher is not None:
            await asyncio.gather(self._publisher, return_exceptions=True)
        leading, self._leading = self._leading, False
        if self._lease:
            try:
                await self._etcd.revoke(self._lease)
                if leading:
                    log.info("ha: released leadership: shutting down")
            except EtcdError as exc:
                log.warning("ha: could not leave the cluster cleanly: %s", exc)
        await self._etcd.aclose()
