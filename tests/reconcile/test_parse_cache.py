"""The parse cache: safe under concurrent parses and saves, bounded by the live files, and
stored as plain data (reading it runs no code)."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import task_hcl

from reconciler.reconcile.cache import ParseCache
from reconciler.reconcile.engine import Reconciler
from reconciler.registry.store import Registry
from reconciler.sources.base import content_digest
from reconciler.sources.directory import DirectorySource
from reconciler.taskfiles.load import load_task_file

FIXTURES = Path(__file__).parent.parent / "fixtures" / "tasks"

# Files covering every shape of a parse result: each condition type, module inputs,
# buffer periods, literal values of every kind, warnings, problems.
SAMPLES: dict[str, bytes] = {
    "assorted.hcl": (FIXTURES / "assorted.hcl").read_bytes(),
    "plain.hcl": task_hcl("plain").encode(),
    "deprecated.hcl": b"""task {
  name = "old"
  source = "./m"
  services = ["a", "b"]
  source_input "consul-kv" {
    path = "x"
  }
  condition "services" {
    regexp = "^w"
    source_includes_var = true
  }
}
""",
    "schedule.hcl": b'task {\n  name = "cron"\n  module = "./m"\n'
    b'  condition "schedule" {\n    cron = "*/5 * * * *"\n  }\n}\n',
    "broken.hcl": b'task {\n  name = "broken"\n  module = \n}\n',
    "invalid.hcl": b'task {\n  name = "bad name!"\n  module = "./m"\n}\n',
    "task.json": b'{"task": [{"name": "j", "module": "./m", "variables": {"n": 1.5, "l": [1]}}]}',
}


def read_cache(path: Path) -> tuple[dict[str, Any], list[Any]]:
    header, *rows = (orjson.loads(line) for line in path.read_bytes().splitlines())
    return header, rows


def write_cache(path: Path, header: dict[str, Any], rows: list[Any]) -> None:
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in [header, *rows]))


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Switch threads after (almost) every bytecode, so that a race shows up in a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def test_concurrent_parses_and_saves_never_fail(tmp_path: Path, fast_switching: None) -> None:
    cache = ParseCache(tmp_path / "cache.json")
    data = task_hcl("t").encode()
    # Enough entries that each save iterates for a while.
    for i in range(3000):
        cache.get(f"seed-{i}.hcl", f"{i}", data)
    errors: list[BaseException] = []
    stop = threading.Event()

    def parse(worker: int) -> None:
        try:
            for i in range(400):
                cache.get(f"w{worker}/{i % 50}.hcl", f"{i}", data)  # new content each time
                cache.get(f"w{worker}/new-{i}.hcl", "d", data)
        except BaseException as exc:
            errors.append(exc)

    def save() -> None:
        try:
            while not stop.is_set():
                cache.save()
        except BaseException as exc:
            errors.append(exc)

    savers = [threading.Thread(target=save) for _ in range(2)]
    parsers = [threading.Thread(target=parse, args=(w,)) for w in range(3)]
    for t in savers + parsers:
        t.start()
    for t in parsers:
        t.join(timeout=120)
    stop.set()
    for t in savers:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in savers + parsers)
    assert errors == []
    # Every live file has exactly its current entry, on disk as in memory.
    cache.save()
    live = 3000 + 3 * (50 + 400)
    assert cache.size() == live
    reread = ParseCache(tmp_path / "cache.json")
    reread.load()
    assert reread.size() == live


def test_an_edited_file_keeps_only_its_current_version() -> None:
    cache = ParseCache()
    for i in range(100):
        data = task_hcl("t", description=f'"v{i}"').encode()
        cache.get("t.hcl", content_digest(data), data)
    assert cache.size() == 1
    cache.forget("t.hcl")
    assert cache.size() == 0


def test_the_engine_keeps_one_entry_per_live_file(tmp_path: Path) -> None:
    root = tmp_path / "tasks"
    root.mkdir()
    source = DirectorySource(root, display_base=tmp_path)
    reconciler = Reconciler(Registry())
    reconciler.add_source("directory")

    def sync() -> None:
        update = source.full_scan()
        parsed = reconciler.parse(update, source.display_path, "directory")
        reconciler.apply("directory", update, parsed, source.display_path)

    for name in ("a", "b", "c"):
        (root / f"{name}.hcl").write_text(task_hcl(name))
    sync()
    for i in range(20):
        (root / "a.hcl").write_text(task_hcl("a", description=f'"edit {i}"'))
        sync()
    assert reconciler.cache.size() == 3
    (root / "c.hcl").unlink()
    sync()
    assert reconciler.cache.size() == 2
    assert sorted(reconciler.registry.names()) == ["a", "b"]


def test_same_name_and_bytes_in_two_sources_share_one_entry() -> None:
    cache = ParseCache()
    data = task_hcl("t").encode()
    digest = content_digest(data)
    cache.get("t.hcl", digest, data, file=("one", "t.hcl"))
    cache.get("t.hcl", digest, data, file=("two", "t.hcl"))
    assert (cache.hits, cache.misses, cache.size()) == (1, 1, 1)
    cache.forget(("one", "t.hcl"))
    assert cache.size() == 1  # still live in the other source
    cache.forget(("two", "t.hcl"))
    assert cache.size() == 0


def test_round_trip_gives_equal_parse_results(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = ParseCache(path)
    fresh = {}
    for name, data in SAMPLES.items():
        fresh[name] = cache.get(name, content_digest(data), data)
    assert fresh["broken.hcl"].problems and fresh["invalid.hcl"].problems
    assert fresh["deprecated.hcl"].warnings
    cache.save()
    header, rows = read_cache(path)  # plain JSON
    assert header["format"].startswith("reconciler-parse-cache/")
    assert len(rows) == len(SAMPLES)
    warm = ParseCache(path)
    warm.load()
    for name, data in SAMPLES.items():
        got = warm.get(name, content_digest(data), data)
        assert got == fresh[name], name
        assert got == load_task_file(data, name), name
    assert (warm.hits, warm.misses) == (len(SAMPLES), 0)


def test_a_value_json_cannot_hold_is_parsed_again_not_altered(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = ParseCache(path)
    huge = task_hcl("h", variables="{\n    n = 123456789012345678901234567890\n  }").encode()
    plain = task_hcl("p").encode()
    cache.get("huge.hcl", content_digest(huge), huge)
    cache.get("plain.hcl", content_digest(plain), plain)
    cache.save()
    warm = ParseCache(path)
    warm.load()
    got = warm.get("huge.hcl", content_digest(huge), huge)
    assert got.tasks[0].spec.variables == {"n": 123456789012345678901234567890}
    warm.get("plain.hcl", content_digest(plain), plain)
    assert (warm.hits, warm.misses) == (1, 1)


def test_a_pickle_at_the_cache_path_is_never_executed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "cache.json"
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    cache = ParseCache(path)
    with caplog.at_level(logging.WARNING):
        cache.load()
    assert not marker.exists()
    assert cache.size() == 0
    assert str(path) in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        lambda rows: rows[0].__setitem__(2, {"tasks": "not a list"}),
        lambda rows: rows[0][2]["tasks"][0]["spec"].__setitem__("name", 7),
        lambda rows: rows[0][2]["tasks"][0]["spec"].__setitem__("surprise", 1),
        lambda rows: rows[0][2]["tasks"][0].pop("spec"),
        lambda rows: rows[0][2]["tasks"][0]["spec"].__setitem__("condition", ["Os", {}]),
        lambda rows: rows[0].pop(),
        lambda rows: rows.append({"not": "a row"}),
    ],
)
def test_a_damaged_cache_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    path = tmp_path / "cache.json"
    cache = ParseCache(path)
    data = SAMPLES["plain.hcl"]
    cache.get("plain.hcl", content_digest(data), data)
    cache.save()
    header, rows = read_cache(path)
    damage(rows)  # type: ignore[operator]
    write_cache(path, header, rows)
    warm = ParseCache(path)
    with caplog.at_level(logging.WARNING):
        warm.load()
    assert warm.size() == 0
    assert "ignoring unreadable parse cache" in caplog.text
    assert warm.get("plain.hcl", content_digest(data), data) == load_task_file(data, "plain.hcl")


def test_a_cache_of_another_schema_is_parsed_again(tmp_path: Path) -> None:
    path = tmp_path / "cache.json"
    cache = ParseCache(path)
    data = SAMPLES["plain.hcl"]
    cache.get("plain.hcl", content_digest(data), data)
    cache.save()
    header, rows = read_cache(path)
    write_cache(path, {**header, "schema": "0" * 16}, rows)
    warm = ParseCache(path)
    warm.load()
    assert warm.size() == 0


class _Payload:
    """Unpickling this creates a file: what a planted cache would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))
