"""JSON task and config files, read into the same Body/Block shape as HCL.

Which keys are blocks (and how many labels they take) comes from a schema, as in HCL's
JSON syntax: `"condition": {"services": {...}}` is a block with one label. Objects remember
the line where they start, so problems in JSON files also name file:line.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
from typing import Any

from reconciler._core.errors import ConfigError, Location, Problem
from reconciler.taskfiles.hcl import Attribute, Block, Body

# key -> (number of labels, schema of the block's body)
Schema = dict[str, tuple[int, "Schema"]]


class _Obj(dict[str, Any]):
    pos: int = 0  # offset of "{"
    key_pos: dict[str, int]  # offset of each key's opening quote


def _loads_with_positions(text: str) -> Any:
    # parse_object, scan_once, JSONObject and py_make_scanner are untyped internals.
    decoder: Any = json.JSONDecoder()
    internals: Any = json.decoder
    scanner: Any = json.scanner

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
        s, end = s_and_end
        pairs, new_end = internals.JSONObject(s_and_end, *args)
        obj = _Obj(pairs)
        obj.pos = end - 1
        obj.key_pos = _key_positions(s, end, len(pairs), decoder.scan_once)
        return obj, new_end

    def hook(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f'duplicate key "{key}"')
            seen.add(key)
        return pairs

    decoder.object_pairs_hook = hook
    decoder.parse_object = parse_object
    # The C scanner ignores parse_object; the Python one honours it.
    decoder.scan_once = scanner.py_make_scanner(decoder)
    return decoder.decode(text)


def _key_positions(s: str, pos: int, count: int, scan_once: Any) -> dict[str, int]:
    """Where each key of the object whose "{" ends at `pos` starts. The object is already
    known to be valid JSON; values are skipped by scanning them again (task files are
    small, and this is the price of line numbers for every attribute)."""
    ws = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]
    out: dict[str, int] = {}
    for _ in range(count):
        pos = ws(s, pos).end()
        if s[pos] == ",":
            pos = ws(s, pos + 1).end()
        key, end = json.decoder.scanstring(s, pos + 1)  # type: ignore[attr-defined]
        out.setdefault(key, pos)
        pos = ws(s, end).end() + 1  # past ":"
        _, pos = scan_once(s, ws(s, pos).end())
    return out


def parse_json(source: bytes, filename: str, schema: Schema) -> Body:
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = source.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            Problem("file is not valid UTF-8 text", location=Location(filename, line))
        ) from None
    try:
        data = _loads_with_positions(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            Problem(f"invalid JSON: {exc.msg}", location=Location(filename, exc.lineno, exc.colno))
        ) from None
    except (ValueError, RecursionError) as exc:
        raise ConfigError(Problem(f"invalid JSON: {exc}", location=Location(filename, 1))) from None
    if not isinstance(data, dict):
        raise ConfigError(
            Problem("a JSON file must hold an object", location=Location(filename, 1))
        )
    lines = _LineIndex(text)
    return _body(data, schema, lines, 1)


class _LineIndex:
    def __init__(self, text: str) -> None:
        self.starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self.starts.append(i + 1)

    def line(self, pos: int) -> int:
        import bisect

        return bisect.bisect_right(self.starts, pos)


def _line(obj: Any, lines: _LineIndex, default: int) -> int:
    return lines.line(obj.pos) if isinstance(obj, _Obj) else default


def _body(obj: dict[str, Any], schema: Schema, lines: _LineIndex, line: int) -> Body:
    body = Body()
    for key, value in obj.items():
        if key in schema:
            labels, sub = schema[key]
            for item in value if isinstance(value, list) else [value]:
                body.blocks.extend(_blocks(key, item, labels, sub, lines, line, []))
        else:
            here = lines.line(obj.key_pos[key]) if isinstance(obj, _Obj) else line
            body.attributes.append(Attribute(key, _plain(value), here, 1, 0, 0))
    return body


def _blocks(
    key: str,
    value: Any,
    labels: int,
    schema: Schema,
    lines: _LineIndex,
    line: int,
    prefix: list[str],
) -> list[Block]:
    here = _line(value, lines, line)
    if not isinstance(value, dict):
        # Not an object where a block belongs: keep it as an attribute-shaped block that
        # the decoder will reject with a clear message.
        return [
            Block(
                key,
                prefix,
                Body([Attribute("__invalid__", _plain(value), here, 1, 0, 0)]),
                here,
                1,
                0,
                0,
            )
        ]
    if len(prefix) == labels:
        return [Block(key, prefix, _body(value, schema, lines, here), here, 1, 0, 0)]
    out: list[Block] = []
    for label, inner in value.items():
        for item in inner if isinstance(inner, list) else [inner]:
            out.extend(
                _blocks(
                    key, item, labels, schema, lines, _line(item, lines, here), [*prefix, label]
                )
            )
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
