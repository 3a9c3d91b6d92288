"""The reconciler's rules, driven synchronously over a real directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import fresh_load, task_hcl

from reconciler.reconcile.engine import Reconciler
from reconciler.registry.store import Registry, RegistryChange
from reconciler.sources.directory import DirectorySource


class Harness:
    def __init__(self, root: Path, *, allow_empty: bool = False) -> None:
        self.root = root
        self.source = DirectorySource(root, display_base=root.parent)
        self.registry = Registry()
        self.reconciler = Reconciler(self.registry)
        self.status = self.reconciler.add_source("directory", allow_empty=allow_empty)

    def sync(self, deliberate: tuple[str, ...] = ()) -> RegistryChange:
        update = self.source.full_scan()
        parsed = self.reconciler.parse(update, self.source.display_path)
        return self.reconciler.apply(
            "directory", update, parsed, self.source.display_path, deliberate=deliberate
        )

    def specs(self) -> dict[str, object]:
        return {t.spec.name: t.spec for t in self.registry}


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    root = tmp_path / "tasks"
    root.mkdir()
    return Harness(root)


def test_create_update_delete_unchanged(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    (h.root / "b.hcl").write_text(task_hcl("b"))
    change = h.sync()
    assert sorted(t.spec.name for t in change.created) == ["a", "b"]
    (h.root / "a.hcl").write_text(task_hcl("a", names=("api",)))
    (h.root / "b.hcl").unlink()
    change = h.sync()
    assert [new.spec.name for _, new in change.updated] == ["a"]
    assert [t.spec.name for t in change.deleted] == ["b"]
    assert not h.sync()  # nothing changed: no-op


def test_noop_reconcile_does_not_reparse(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    h.sync()
    misses = h.reconciler.cache.misses
    os.utime(h.root / "a.hcl")  # touched, same content
    assert not h.sync()
    assert h.reconciler.cache.misses == misses


def test_broken_file_keeps_last_known_good(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    (h.root / "b.hcl").write_text(task_hcl("b"))
    h.sync()
    before = h.registry.get("a")
    (h.root / "a.hcl").write_text('task {\n  name = "a"\n')
    (h.root / "b.hcl").write_text(task_hcl("b", names=("db",)))
    change = h.sync()
    assert h.registry.get("a") == before
    assert [new.spec.name for _, new in change.updated] == ["b"]
    assert list(h.reconciler.problems()) == ["tasks/a.hcl"]
    assert "tasks/a.hcl:3:1: syntax error" in h.reconciler.problems()["tasks/a.hcl"][0]
    (h.root / "a.hcl").write_text(task_hcl("a", names=("fixed",)))
    h.sync()
    assert h.reconciler.problems() == {}
    assert h.registry.get("a").spec.condition.names == ("fixed",)  # type: ignore[union-attr]


def test_new_broken_file_adds_nothing_and_reports(h: Harness) -> None:
    (h.root / "a.hcl").write_text("\x00garbage")
    assert not h.sync()
    assert "tasks/a.hcl:1: file contains NUL bytes" in h.reconciler.problems()["tasks/a.hcl"]


def test_same_name_in_two_files_live_one_wins(h: Harness) -> None:
    (h.root / "b.hcl").write_text(task_hcl("web", names=("from-b",)))
    h.sync()
    (h.root / "a.hcl").write_text(task_hcl("web", names=("from-a",)))
    h.sync()
    live = h.registry.get("web")
    assert live is not None and live.provenance.file == "tasks/b.hcl"
    errors = h.reconciler.problems()["tasks/a.hcl"]
    assert errors == [
        'tasks/a.hcl:1: task "web" is already defined in tasks/b.hcl; this definition is ignored'
    ]
    # When the live definition goes away, the other file takes over.
    (h.root / "b.hcl").unlink()
    h.sync()
    live = h.registry.get("web")
    assert live is not None and live.provenance.file == "tasks/a.hcl"
    assert h.reconciler.problems() == {}


def test_provenance_file_line_and_content_revision(h: Harness) -> None:
    (h.root / "sub").mkdir()
    text = "# two tasks\n" + task_hcl("a") + "\n" + task_hcl("b")
    (h.root / "sub" / "x.hcl").write_text(text)
    h.sync()
    a, b = h.registry.get("a"), h.registry.get("b")
    assert a is not None and b is not None
    assert (a.provenance.file, a.provenance.line) == ("tasks/sub/x.hcl", 2)
    assert (b.provenance.file, b.provenance.line) == ("tasks/sub/x.hcl", 10)
    import hashlib

    assert a.provenance.revision == hashlib.sha256(text.encode()).hexdigest()


def test_moving_a_task_between_lines_is_not_an_update(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    h.sync()
    (h.root / "a.hcl").write_text("\n\n" + task_hcl("a"))
    change = h.sync()
    assert not change.updated and [t.provenance.line for t in change.moved] == [3]


def test_prune_guard_refuses_to_empty_the_registry(h: Harness) -> None:
    for n in ("a", "b", "c"):
        (h.root / f"{n}.hcl").write_text(task_hcl(n))
    h.sync()
    for n in ("a", "b", "c"):
        (h.root / f"{n}.hcl").unlink()
    change = h.sync()
    assert not change.deleted and len(h.registry) == 3
    assert h.status.guard is not None and "refusing to remove all 3 tasks" in h.status.guard
    # Files come back: guard clears, nothing was lost.
    for n in ("a", "b", "c"):
        (h.root / f"{n}.hcl").write_text(task_hcl(n))
    h.sync()
    assert h.status.guard is None and sorted(h.specs()) == ["a", "b", "c"]


def test_prune_guard_allows_partial_deletes_and_deliberate_ones(h: Harness) -> None:
    for n in ("a", "b"):
        (h.root / f"{n}.hcl").write_text(task_hcl(n))
    h.sync()
    (h.root / "a.hcl").unlink()
    assert [t.spec.name for t in h.sync().deleted] == ["a"]
    (h.root / "a.hcl").write_text(task_hcl("a"))
    h.sync()
    (h.root / "a.hcl").unlink()
    (h.root / "b.hcl").unlink()
    assert sorted(t.spec.name for t in h.sync(deliberate=("a", "b")).deleted) == ["a", "b"]


def test_allow_empty_lets_everything_go(tmp_path: Path) -> None:
    root = tmp_path / "tasks"
    root.mkdir()
    h = Harness(root, allow_empty=True)
    for n in ("a", "b"):
        (root / f"{n}.hcl").write_text(task_hcl(n))
    h.sync()
    for n in ("a", "b"):
        (root / f"{n}.hcl").unlink()
    assert len(h.sync().deleted) == 2


def test_missing_source_directory_prunes_nothing(h: Harness) -> None:
    from reconciler._core.errors import SourceError

    for n in ("a", "b"):
        (h.root / f"{n}.hcl").write_text(task_hcl(n))
    h.sync()
    (h.root / "a.hcl").unlink()
    (h.root / "b.hcl").unlink()
    h.root.rmdir()
    with pytest.raises(SourceError, match="does not exist"):
        h.sync()
    assert len(h.registry) == 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_file_keeps_tasks(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    h.sync()
    (h.root / "a.hcl").chmod(0)
    h.source.scan_paths({"a.hcl"})
    assert "a" in h.registry


def test_symlink_loop_and_dangling_link_are_file_errors(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    (h.root / "loop.hcl").symlink_to(h.root / "loop.hcl")
    (h.root / "dir-loop").symlink_to(h.root, target_is_directory=True)
    h.sync()
    assert "a" in h.registry
    assert "cannot read file" in h.reconciler.problems()["tasks/loop.hcl"][0]


def test_registry_equals_fresh_load(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a") + task_hcl("b"))
    (h.root / "c.json").write_text(
        '{"task": {"name": "c", "module": "m", "condition": {"schedule": {"cron": "@daily"}}}}'
    )
    (h.root / ".hidden.hcl").write_text(task_hcl("hidden"))
    (h.root / "notes.txt").write_text("not a task")
    h.sync()
    assert h.specs() == fresh_load(h.root)


def test_huge_file_is_a_file_error_and_nothing_else_changes(h: Harness) -> None:
    (h.root / "a.hcl").write_text(task_hcl("a"))
    h.sync()
    with (h.root / "huge.hcl").open("wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB without using the disk
    assert not h.sync()
    assert "a" in h.registry
    (problem,) = h.reconciler.problems()["tasks/huge.hcl"]
    assert "larger than the 16777216 byte limit" in problem


def test_empty_file_defines_nothing_and_is_fine(h: Harness) -> None:
    (h.root / "empty.hcl").write_text("")
    (h.root / "comments.hcl").write_text("# nothing here yet\n")
    assert not h.sync()
    assert h.reconciler.problems() == {}
