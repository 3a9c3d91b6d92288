"""`condition "schedule"`: the task runs at the times a cron expression names, in local
time. It feeds no module variable, and no buffer period applies to it (CTS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Never

from reconciler.taskfiles.conditions.base import ConditionKind, Field, Invalid
from reconciler.taskfiles.cron import check as check_cron


@dataclass(frozen=True)
class ScheduleCondition:
    type: Literal["schedule"] = "schedule"
    cron: str | None = None


class ScheduleKind(ConditionKind[ScheduleCondition, Never]):
    name = "schedule"
    api_name = "schedule"
    condition = ScheduleCondition
    condition_fields = (
        Field(
            "cron",
            "str",
            description='A cron expression as CTS reads it ("*/5 * * * *").',
            required=True,
        ),
    )
    condition_schema = "ScheduleCondition"
    trigger = "schedule"
    buffered = False
    example = {
        "name": "nightly",
        "module": "path/to/module",
        "description": "Runs every night at 03:00",
        "condition": {"schedule": {"cron": "0 3 * * *"}},
        "module_input": {
            "services": {"names": ["db"], "filter": 'Service.Tags contains "primary"'}
        },
        "buffer_period": {"enabled": False},
    }

    def validate(
        self, item: ScheduleCondition, path: tuple[str | int, ...], where: tuple[str, ...]
    ) -> list[Invalid]:
        if not item.cron:
            return [Invalid(path, where, '"cron" is required')]
        problem = check_cron(item.cron)
        return [Invalid((*path, "cron"), where, problem)] if problem else []

    def summary(self, shown: Mapping[str, Any]) -> str:
        return str(shown.get("cron", ""))

    def cron(self, item: ScheduleCondition) -> str | None:
        return item.cron


SCHEDULE = ScheduleKind()
