"""No useless runs: the digest of a task's last successful apply (definition, rendered
inputs, local module) is persisted, and a trigger or a start that would apply the same
thing again runs nothing and records nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfakes import FakeDriver, StaticCatalog, create, live, make_scheduler, spec
from test_run_queue import ManualSource

from reconciler.registry.status import StatusStore
from reconciler.registry.store import Registry
from reconciler.runner.inputs import ServiceInstance
from reconciler.runs.scheduler import Scheduler
from reconciler.triggers.sources import Trigger

pytestmark = pytest.mark.anyio

WEB = ServiceInstance(id="web-1", name="web", node="n1", address="10.0.0.1")


def start(
    tmp_path: Path,
    catalog: StaticCatalog,
    *,
    apply_on_start: str = "changed",
    fake: FakeDriver | None = None,
) -> tuple[Registry, Scheduler, FakeDriver, ManualSource]:
    source = ManualSource()
    registry, scheduler, fake = make_scheduler(
        tmp_path,
        fake,
        status=StatusStore(tmp_path / "state" / "events.json"),
        catalog=catalog,
        sources=[source],
        apply_on_start=apply_on_start,
    )
    scheduler.status.load()
    return registry, scheduler, fake, source


async def restart(
    tmp_path: Path, catalog: StaticCatalog, **kwargs: str
) -> tuple[Registry, Scheduler, FakeDriver, ManualSource]:
    registry, scheduler, fake, source = start(tmp_path, catalog, **kwargs)  # type: ignore[arg-type]
    create(registry, live(spec("t")))
    scheduler.trigger_all()
    await scheduler.idle()
    return registry, scheduler, fake, source


async def test_an_unchanged_trigger_runs_and_records_nothing(tmp_path: Path) -> None:
    catalog = StaticCatalog([WEB])
    _registry, scheduler, fake, source = await restart(tmp_path, catalog)
    assert len(fake.ops("t", "apply")) == 1 and len(scheduler.status.events("t")) == 1
    assert source.fire is not None
    source.fire(Trigger("t", "services changed"))  # the data changed and changed back
    await scheduler.idle()
    assert len(fake.ops("t", "apply")) == 1 and len(scheduler.status.events("t")) == 1
    catalog.instances.append(ServiceInstance(id="web-2", name="web", node="n1"))
    source.fire(Trigger("t", "services changed"))
    await scheduler.idle()
    assert len(fake.ops("t", "apply")) == 2 and len(scheduler.status.events("t")) == 2
    await scheduler.run_now("t")  # an explicit run always applies
    assert len(fake.ops("t", "apply")) == 3
    await scheduler.shutdown(0)


async def test_a_restart_with_nothing_changed_applies_nothing(tmp_path: Path) -> None:
    catalog = StaticCatalog([WEB])
    _, scheduler, fake, _ = await restart(tmp_path, catalog)
    assert len(fake.ops("t", "apply")) == 1
    await scheduler.shutdown(0)

    _, scheduler, fake, _ = await restart(tmp_path, catalog)
    assert fake.ops("t", "apply") == [] and len(scheduler.status.events("t")) == 1
    progress = {"tasks": 1, "initialised": 1, "applied": 1, "pending": 0, "init_errors": 0}
    assert scheduler.progress() == progress
    await scheduler.shutdown(0)

    catalog.instances.append(ServiceInstance(id="web-2", name="web", node="n1"))
    _, scheduler, fake, _ = await restart(tmp_path, catalog)  # the inputs changed
    assert len(fake.ops("t", "apply")) == 1
    await scheduler.shutdown(0)

    _, scheduler, fake, _ = await restart(tmp_path, catalog, apply_on_start="always")
    assert len(fake.ops("t", "apply")) == 1  # CTS's behaviour, asked for
    await scheduler.shutdown(0)


async def test_a_failed_apply_is_applied_again_at_start(tmp_path: Path) -> None:
    catalog = StaticCatalog([WEB])
    _, scheduler, _, _ = await restart(tmp_path, catalog)
    await scheduler.shutdown(0)
    failing = FakeDriver(failing={"t": {"apply"}})
    registry, scheduler, fake, _source = start(tmp_path, catalog, fake=failing)
    create(registry, live(spec("t")))
    await scheduler.run_now("t")
    assert scheduler.status.status("t") == "errored"
    await scheduler.shutdown(0)

    _, scheduler, fake, _ = await restart(tmp_path, catalog)
    assert len(fake.ops("t", "apply")) == 1 and scheduler.status.status("t") == "successful"
    await scheduler.shutdown(0)


async def test_an_edited_local_module_is_a_change(tmp_path: Path) -> None:
    module = tmp_path / "mod"
    module.mkdir()
    (module / "main.tf").write_text('variable "services" {}\n')
    catalog = StaticCatalog([WEB])

    async def once() -> int:
        registry, scheduler, fake, _ = start(tmp_path, catalog)
        create(registry, live(spec("t", module=str(module))))
        scheduler.trigger_all()
        await scheduler.idle()
        await scheduler.shutdown(0)
        return len(fake.ops("t", "apply"))

    assert await once() == 1
    assert await once() == 0
    (module / "main.tf").write_text('variable "services" {}\n# edited\n')
    assert await once() == 1
