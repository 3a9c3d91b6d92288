"""Cron expressions as hashicorp/cronexpr reads them, checked by the code that runs them.

5 fields: min hour dom month dow; 6 fields: min hour dom month dow year; 7 fields: sec min
hour dom month dow year. Macros @yearly/@annually/@monthly/@weekly/@daily/@hourly.

One grammar: `check` and the scheduler (reconciler.triggers.schedule) both go through
`cron_iterator`, so an expression that validates is one the schedule can run. The field
checks in front of it only exist to give CTS's messages ("values must be between 0 and
59") for the mistakes both grammars refuse; whatever they let through must still be
accepted by croniter and have a next time, or it is refused with croniter's reason.

croniter reads a 6th field as seconds, so expressions are translated to croniter's
7-field, seconds-first form (and cronexpr's "last Friday" `5L` to croniter's `L5`).
"""

from __future__ import annotations

import re
from datetime import datetime

from croniter import croniter

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"}
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"

# (low, high, names, extra syntax allowed)
_FIELDS = {
    "second": (0, 59, "", ""),
    "minute": (0, 59, "", ""),
    "hour": (0, 23, "", ""),
    "day of month": (1, 31, "", "LW"),
    "month": (1, 12, _MONTHS, ""),
    "day of week": (0, 7, _DAYS, "L#"),
    "year": (1970, 2099, "", ""),
}
_NAMES = {
    5: ["minute", "hour", "day of month", "month", "day of week"],
    6: ["minute", "hour", "day of month", "month", "day of week", "year"],
    7: ["second", "minute", "hour", "day of month", "month", "day of week", "year"],
}
_LAST_WEEKDAY = re.compile(r"^([0-7])L$", re.IGNORECASE)
# A year far ahead (cronexpr allows up to 2099) is a match, not "no next date".
_YEARS_AHEAD = 100


def cron_iterator(expr: str, start: datetime) -> croniter:
    """croniter over a cronexpr expression. Raises ValueError (croniter's errors derive
    from it) or KeyError for an expression croniter cannot read."""
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
    """The first time after `after` the expression names. Raises ValueError or KeyError
    when there is none (or the expression cannot be read)."""
    nxt = cron_iterator(expr, after).get_next(datetime)
    assert isinstance(nxt, datetime)
    return nxt


def check(expr: str, *, now: datetime | None = None) -> str | None:
    """Return None when `expr` is valid and has a next time after `now`, else a message
    saying what is wrong."""
    problem = _check_syntax(expr)
    if problem is not None:
        return problem
    try:
        next_fire(expr, now or datetime.now().astimezone())
    except (ValueError, KeyError) as exc:
        if "failed to find" in str(exc):  # croniter's CroniterBadDateError
            return f'invalid cron expression "{expr}": it matches no time from now on'
        field = _unreadable_field(expr)
        if field is not None:
            name, part = field
            return (
                f'invalid cron expression "{expr}": {name} field "{part}": '
                "this form is not supported"
            )
        return f'invalid cron expression "{expr}": not supported ({exc})'
    return None


def _unreadable_field(expr: str) -> tuple[str, str] | None:
    """The first field croniter refuses on its own (every other field `*`)."""
    parts = expr.split()
    names = _NAMES.get(len(parts), [])
    start = datetime(2000, 1, 1).astimezone()
    for i, (name, part) in enumerate(zip(names, parts, strict=False)):
        probe = ["*"] * len(parts)
        probe[i] = part
        try:
            cron_iterator(" ".join(probe), start)
        except (ValueError, KeyError):
            return name, part
    return None


def _check_syntax(expr: str) -> str | None:
    text = expr.strip()
    if text.lower() in MACROS:
        return None
    if text.startswith("@"):
        macros = ", ".join(sorted(MACROS))
        return f'invalid cron expression "{expr}": unknown macro (use one of {macros})'
    parts = text.split()
    names = _NAMES.get(len(parts))
    if names is None:
        return f'invalid cron expression "{expr}": expected 5, 6 or 7 fields, found {len(parts)}'
    for name, part in zip(names, parts, strict=True):
        problem = _check_field(part, name)
        if problem:
            return f'invalid cron expression "{expr}": {name} field "{part}": {problem}'
    return None


def _value(token: str, low: int, high: int, names: str) -> int | None:
    if names and re.fullmatch(names, token, re.IGNORECASE):
        return 0
    if not token.isdigit():
        return None
    value = int(token)
    return value if low <= value <= high else None


def _check_field(part: str, name: str) -> str | None:
    low, high, names, extra = _FIELDS[name]
    for item in part.split(","):
        if not item:
            return "empty list item"
        if item in ("*", "?"):
            continue
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f'invalid step "{step}"'
        if "L" in extra and re.fullmatch(r"(L|LW|\d{1,2}W|\d{1,2}L|[0-7]L)", base, re.IGNORECASE):
            continue
        if "#" in extra and re.fullmatch(r"[0-7]#[1-5]", base):
            continue
        if base in ("*", "?"):
            continue
        lo, _, hi = base.partition("-")
        if _value(lo, low, high, names) is None or (hi and _value(hi, low, high, names) is None):
            return f"values must be between {low} and {high}"
    return None
