"""Cron expressions as CTS's cronexpr reads them, evaluated by croniter."""

from __future__ import annotations

from datetime import datetime

import pytest

from reconciler.taskfiles.cron import check
from reconciler.taskfiles.load import load_task_file
from reconciler.triggers.schedule import next_fire

START = datetime(2026, 3, 4, 10, 20, 30).astimezone()  # a Wednesday


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("*/15 * * * *", datetime(2026, 3, 4, 10, 30)),
        ("0 3 * * *", datetime(2026, 3, 5, 3, 0)),
        ("@hourly", datetime(2026, 3, 4, 11, 0)),
        ("@daily", datetime(2026, 3, 5, 0, 0)),
        # 6 fields: the 6th is the year (cronexpr), not seconds (croniter).
        ("0 0 1 1 * 2099", datetime(2099, 1, 1, 0, 0)),
        # 7 fields: seconds first.
        ("45 * * * * * *", datetime(2026, 3, 4, 10, 20, 45)),
        ("0 0 * * 5L", datetime(2026, 3, 27, 0, 0)),  # the last Friday of the month
        ("0 0 L * *", datetime(2026, 3, 31, 0, 0)),
    ],
)
def test_next_fire(expr: str, expected: datetime) -> None:
    assert next_fire(expr, START) == expected.astimezone()


@pytest.mark.parametrize(
    "expr, message",
    [
        ("0 0 LW * *", 'day of month field "LW": this form is not supported'),
        ("0 0 15L * *", 'day of month field "15L": this form is not supported'),
        ("0 0 30 2 *", "it matches no time from now on"),
        ("0 0 1 1 * 2020", "it matches no time from now on"),
        # CTS's own messages where both grammars refuse.
        ("61 * * * *", 'minute field "61": values must be between 0 and 59'),
        ("* * *", "expected 5, 6 or 7 fields, found 3"),
    ],
)
def test_what_cannot_run_does_not_validate(expr: str, message: str) -> None:
    problem = check(expr, now=START)
    assert problem == f'invalid cron expression "{expr}": {message}'


# Every field form cronexpr documents, in every position it is allowed.
_FORMS = ["*", "?", "5", "1-5", "*/5", "1-10/2", "1,3,5", "L", "LW", "3W", "5L", "2#3", "mon"]


@pytest.mark.parametrize("form", _FORMS)
@pytest.mark.parametrize("position", range(5))
def test_what_validates_runs(form: str, position: int) -> None:
    fields = ["0", "0", "*", "*", "*"]
    fields[position] = form
    expr = " ".join(fields)
    if check(expr, now=START) is None:
        assert next_fire(expr, START) > START
    else:
        with pytest.raises((ValueError, KeyError)):
            next_fire(expr, START)


def test_a_task_file_with_a_schedule_that_cannot_run_names_the_line() -> None:
    text = (
        'task {\n  name = "n"\n  module = "m"\n  condition "schedule" {\n'
        '    cron = "0 0 LW * *"\n  }\n}\n'
    )
    loaded = load_task_file(text.encode(), "tasks/n.hcl")
    assert [str(p) for p in loaded.problems] == [
        'tasks/n.hcl:5: task "n": condition "schedule": invalid cron expression "0 0 LW * *": '
        'day of month field "LW": this form is not supported'
    ]
