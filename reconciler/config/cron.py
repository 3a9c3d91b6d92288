"""Syntax check for cron expressions as hashicorp/cronexpr reads them.

5 fields: min hour dom month dow; 6 fields: min hour dom month dow year; 7 fields: sec min
hour dom month dow year. Macros @yearly/@annually/@monthly/@weekly/@daily/@hourly. Fields
take *, ?, ranges, steps, lists, month/day names, and L, W and # where cronexpr allows them.
"""

from __future__ import annotations

import re

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly"}
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_DAYS = "sun|mon|tue|wed|thu|fri|sat"

# (name, low, high, names, extra syntax allowed)
_FIELDS = {
    "second": (0, 59, "", ""),
    "minute": (0, 59, "", ""),
    "hour": (0, 23, "", ""),
    "day of month": (1, 31, "", "LW"),
    "month": (1, 12, _MONTHS, ""),
    "day of week": (0, 7, _DAYS, "L#"),
    "year": (1970, 2099, "", ""),
}


def check(expr: str) -> str | None:
    """Return None when `expr` is valid, else a message saying what is wrong."""
    text = expr.strip()
    if text.lower() in MACROS:
        return None
    if text.startswith("@"):
        macros = ", ".join(sorted(MACROS))
        return f'invalid cron expression "{expr}": unknown macro (use one of {macros})'
    parts = text.split()
    names = {
        5: ["minute", "hour", "day of month", "month", "day of week"],
        6: ["minute", "hour", "day of month", "month", "day of week", "year"],
        7: ["second", "minute", "hour", "day of month", "month", "day of week", "year"],
    }.get(len(parts))
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
