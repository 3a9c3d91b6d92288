"""Cron expressions as CTS's cronexpr reads them, evaluated by croniter."""

from __future__ import annotations

from datetime import datetime

import pytest

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
