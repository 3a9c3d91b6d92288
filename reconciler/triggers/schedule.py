"""`condition "schedule"`: fire on a cron expression, in local time as CTS does.

CTS reads cron with hashicorp/cronexpr, where a 6th field is the year and a 7-field
expression starts with seconds; croniter reads a 6th field as seconds, so expressions are
translated to croniter's 7-field, seconds-first form (and cronexpr's "last Friday" `5L`
to croniter's `L5`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import datetime

from croniter import croniter

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def local_now() -> datetime:
    return datetime.now().astimezone()


_LAST_WEEKDAY = re.compile(r"^([0-7])L$", re.IGNORECASE)
# A year far ahead (cronexpr allows up to 2099) is a match, not "no next date".
_YEARS_AHEAD = 100


def cron_iterator(expr: str, start: datetime) -> croniter:
    text = expr.strip()
    if text.startswith("@"):
        return croniter(text.lower(), start)
    fields = text.split()
    if len(fields) == 6:  # min hour dom month dow year
        fields = ["0", *fields]
    dow = len(fields) - 2 if len(fields) == 7 else 4
    if 0 <= dow < len(fields):
        fields[dow] = _LAST_WEEKDAY.sub(r"L\1", fields[dow])
    if len(fields) == 7:
        return croniter(
            " ".join(fields),
            start,
            second_at_beginning=True,
            max_years_between_matches=_YEARS_AHEAD,
        )
    return croniter(" ".join(fields), start)


def next_fire(expr: str, after: datetime) -> datetime:
    nxt = cron_iterator(expr, after).get_next(datetime)
    assert isinstance(nxt, datetime)
    return nxt


async def run_schedule(
    name: str, expr: str, fire: Callable[[], None], *, clock: Clock = local_now
) -> None:
    """Call `fire` at every time the expression names, until cancelled."""
    last = clock()
    while True:
        try:
            when = next_fire(expr, last)
        except (ValueError, KeyError) as exc:
            log.error("task %s: schedule %r has no next time: %s", name, expr, exc)
            return
        delay = (when - clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        last = when
        fire()
