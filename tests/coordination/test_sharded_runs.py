"""`shard_runs = true` through `reconciler start`: three daemons, one real etcd, one git
repository of 24 tasks and one shared embedded catalog. Every task runs on the member
that owns it (rendezvous hashing over the live members), exactly once per change of its
inputs; after kill -9 of a member its tasks run on the others, still once per change."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from helpers import task_hcl, wait_for
from test_ha_daemons import MODULE, Member, call, cluster_of

from reconciler.coordination.shards import owner

TASKS = [f"t{i:02d}" for i in range(100)]
APPLIED = re.compile(r"task (t\d\d): applied \(")


def instance(n: int) -> str:
    return (
        f'service {{\n  name = "web"\n  id = "web-{n}"\n  address = "10.0.0.{n}"\n  port = 80\n}}\n'
    )


def applies(members: list[Member]) -> Counter[tuple[str, str]]:
    """(member, task) -> how many times the member applied the task."""
    return Counter((m.id, name) for m in members for name in APPLIED.findall(m.log()))


def idle(members: list[Member]) -> bool:
    for m in members:
        status, body = call(m.port, "GET", "/v1/status")
        runs = body.get("runs")
        if status != 200 or not isinstance(runs, dict) or runs["pending"] != 0:
            return False
    return True


def settle(members: list[Member], live: list[Member], rounds: int) -> Counter[tuple[str, str]]:
    """Until every task has applied `rounds` times in all and nothing is pending."""

    def done() -> bool:
        per_task = Counter(task for (_, task), n in applies(members).items() for _ in range(n))
        return all(per_task[t] >= rounds for t in TASKS) and idle(live)

    wait_for(done, timeout=180, what="\n".join(m.log()[-3000:] for m in members))
    return applies(members)


def test_runs_spread_over_the_members_once_per_change(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "web-1.hcl").write_text(instance(1))
    files = {f"{t}.hcl": task_hcl(t, module=str(MODULE)) for t in TASKS}
    extra = (
        f'catalog "directory" {{\n  path = "{catalog}"\n}}\n'
        "buffer_period {\n  enabled = false\n}\n"
    )
    with cluster_of(tmp_path, 3, files=files, extra=extra, shard=True) as (members, _r, _e):
        ids = [m.id for m in members]
        expected = Counter((owner(t, ids), t) for t in TASKS)
        # At start the members join one by one: whoever is there runs what it owns then,
        # but each task runs once in all.
        first = settle(members, members, 1)
        assert Counter(task for (_, task) in first.elements()) == Counter(TASKS)
        per_member = Counter(member for member, _ in expected.elements())
        assert all(per_member[i] >= 20 for i in ids), per_member  # about evenly (33 each)

        (catalog / "web-2.hcl").write_text(instance(2))
        counts = settle(members, members, 2)
        assert counts - first == expected  # once more each, on its owner

        gone = members[1]
        assert gone.proc is not None
        gone.proc.kill()
        gone.proc.wait(10)
        live = [m for m in members if m is not gone]

        def two_members() -> bool:
            return all(
                len(call(m.port, "GET", "/v1/status/cluster")[1]["members"]) == 2  # type: ignore[arg-type]
                for m in live
            )

        wait_for(two_members, timeout=60, what="the member's lease to expire")
        (catalog / "web-3.hcl").write_text(instance(3))
        counts = settle(members, live, 3)
        survivors = [m.id for m in live]
        moved = Counter((owner(t, survivors), t) for t in TASKS)
        assert counts - first - expected == moved  # the third run of each, once
        assert any(owner(t, ids) == gone.id for t in TASKS)  # some tasks did move
