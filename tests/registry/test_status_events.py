"""Task events and the status rule of cts-spec 5, and their file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from helpers import async_wait_for

from reconciler.registry.status import Event, EventConfig, StatusStore, status_of

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def ev(success: bool, n: int = 0, name: str = "t") -> Event:
    start = T0 + timedelta(seconds=n)
    return Event(name, success, start, start + timedelta(seconds=1), None if success else "boom")


@pytest.mark.parametrize(
    "newest_first, status",
    [
        ([], "unknown"),
        ([True], "successful"),
        ([True, False, False], "successful"),
        ([False], "errored"),
        ([False, True, True], "errored"),
        ([False, True, False], "critical"),
        ([False, False], "critical"),
    ],
)
def test_status_rule(newest_first: list[bool], status: str) -> None:
    assert status_of([ev(s) for s in newest_first]) == status


def test_event_json_matches_cts() -> None:
    event = Event(
        "web",
        False,
        T0,
        T0 + timedelta(seconds=2),
        "terraform apply failed",
        EventConfig(("aws",), (), "./modules/web"),
        id="e1",
    )
    assert event.to_json() == {
        "id": "e1",
        "success": False,
        "start_time": "2026-01-02T03:04:05.123456Z",
        "end_time": "2026-01-02T03:04:07.123456Z",
        "task_name": "web",
        "error": {"message": "terraform apply failed"},
        "config": {"providers": ["aws"], "services": [], "source": "./modules/web"},
    }
    assert Event.from_json(event.to_json()) == event
    assert ev(True).to_json()["error"] is None


def test_five_newest_kept_and_saved_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "events.json"
    store = StatusStore(path)
    for n in range(8):
        store.record(ev(n % 2 == 0, n))  # recorded outside a loop: saved at once
    assert [e.start_time for e in store.events("t")] == [
        T0 + timedelta(seconds=n) for n in (7, 6, 5, 4, 3)
    ]
    again = StatusStore(path)
    again.load()
    assert again.events("t") == store.events("t")
    assert again.status("t") == "critical"
    assert not [p for p in path.parent.iterdir() if p.name != "events.json"]

    again.retain(["other"])
    assert again.events("t") == []


def test_a_damaged_file_is_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.json"
    path.write_bytes(b"{not json")
    store = StatusStore(path)
    store.load()
    assert store.names() == [] and "cannot be read" in caplog.text

    good = ev(True).to_json()
    path.write_bytes(orjson.dumps({"tasks": {"a": [good], "b": [{"id": "x"}]}}))
    store.load()
    assert store.names() == ["a"] and "damaged" in caplog.text


def test_the_saved_file_is_one_json_document_after_many_changes(tmp_path: Path) -> None:
    """Each task's events are encoded once per change of that task: what is saved after
    later changes still holds every task's newest events, and names JSON must escape."""
    path = tmp_path / "events.json"
    store = StatusStore(path)
    names = ["a", 'quote"d', "back\\slash", "ünï", "new\nline"]
    for n, name in enumerate(names):
        store.record(ev(True, n, name))
    store.record(ev(False, 10, "a"))  # "a" changes after its first encoding
    store.forget("ünï")
    data = orjson.loads(path.read_bytes())
    assert set(data) == {"format", "tasks", "applied", "digests"}
    assert sorted(data["tasks"]) == sorted(n for n in names if n != "ünï")
    again = StatusStore(path)
    again.load()
    for name in names:
        assert again.events(name) == store.events(name)
    assert [e.success for e in again.events("a")] == [False, True]


@pytest.mark.anyio
async def test_saves_while_busy_are_coalesced_and_the_last_change_is_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reconciler.registry import status as status_module

    writes: list[bytes] = []
    real = status_module._write

    def counting(path: Path, data: bytes) -> None:
        writes.append(data)
        real(path, data)

    monkeypatch.setattr(status_module, "_write", counting)
    path = tmp_path / "events.json"
    store = StatusStore(path)
    store.record(ev(True, 0, "t0"))  # saved at once: nothing was saved lately
    await async_wait_for(lambda: len(writes) == 1, what="the first save")
    for n in range(1, 50):
        store.record(ev(True, n, f"t{n}"))
    await store.flush()
    assert len(writes) == 2, len(writes)  # the other 49 changes: one save, not one each
    again = StatusStore(path)
    again.load()
    assert sorted(again.names()) == sorted(f"t{n}" for n in range(50))
