"""Schema-driven reading of a parsed HCL body, collecting problems with file:line.

A `BodyReader` hands out typed values key by key; every key it was not asked about is an
"invalid key" problem (CTS rejects unknown keys), duplicate attributes are problems
(python-hcl2 and HCL1 silently keep the last one; Terraform rejects them).
"""

from __future__ import annotations

import difflib
from typing import Any

from reconciler._core.errors import Location, Problem
from reconciler.taskfiles.durations import parse_duration
from reconciler.taskfiles.hcl import Attribute, Block, Body


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "null"


class BodyReader:
    def __init__(
        self,
        body: Body,
        *,
        file: str,
        where: tuple[str, ...],
        problems: list[Problem],
        line: int = 0,
    ) -> None:
        self.body = body
        self.file = file
        self.where = where
        self.problems = problems
        self.line = line
        self._used: set[str] = set()
        self._attrs: dict[str, Attribute] = {}
        for attr in body.attributes:
            first = self._attrs.get(attr.name)
            if first is not None:
                self.error(
                    f'duplicate attribute "{attr.name}" (first set on line {first.line})',
                    attr.line,
                )
            else:
                self._attrs[attr.name] = attr

    # --- reporting ---------------------------------------------------------------------

    def error(self, message: str, line: int | None = None, where: tuple[str, ...] = ()) -> None:
        self.problems.append(
            Problem(message, (*self.where, *where), Location(self.file, line or self.line))
        )

    def line_of(self, key: str) -> int:
        attr = self._attrs.get(key)
        if attr is not None:
            return attr.line
        block = next((b for b in self.body.blocks if b.type == key), None)
        return block.line if block is not None else self.line

    def has(self, key: str) -> bool:
        return key in self._attrs or any(b.type == key for b in self.body.blocks)

    # --- attributes ----------------------------------------------------------------------

    def raw(self, key: str) -> Attribute | None:
        self._used.add(key)
        attr = self._attrs.get(key)
        if attr is not None and any(b.type == key for b in self.body.blocks):
            self.error(f'"{key}" is set both as an attribute and as a block', attr.line)
        return attr

    def value(self, key: str) -> Any:
        attr = self.raw(key)
        return None if attr is None else attr.value

    def _typed(self, key: str, expected: type | tuple[type, ...], what: str) -> Any:
        attr = self.raw(key)
        if attr is None or attr.value is None:
            return None
        value = attr.value
        if isinstance(value, bool) and expected is not bool:
            self.error(f'"{key}" must be {what}, not {type_name(value)}', attr.line)
            return None
        if not isinstance(value, expected):
            self.error(f'"{key}" must be {what}, not {type_name(value)}', attr.line)
            return None
        return value

    def string(self, key: str) -> str | None:
        value: str | None = self._typed(key, str, "a string")
        return value

    def boolean(self, key: str) -> bool | None:
        value: bool | None = self._typed(key, bool, "a bool (true or false)")
        return value

    def integer(self, key: str) -> int | None:
        value = self._typed(key, (int, float), "a whole number")
        if value is None:
            return None
        if isinstance(value, float) and not value.is_integer():
            self.error(f'"{key}" must be a whole number', self.line_of(key))
            return None
        return int(value)

    def strings(self, key: str) -> tuple[str, ...] | None:
        value = self._typed(key, list, "a list of strings")
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            self.error(f'"{key}" must be a list of strings', self.line_of(key))
            return None
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str] | None:
        block = next((b for b in self.body.blocks if b.type == key and not b.labels), None)
        if block is not None and key not in self._attrs:
            # Block form, as in CTS's docs: node_meta { key = "value" }
            self._used.add(key)
            inner = BodyReader(
                block.body,
                file=self.file,
                where=(*self.where, key),
                problems=self.problems,
                line=block.line,
            )
            out = {}
            for attr in block.body.attributes:
                if isinstance(attr.value, str):
                    out[attr.name] = attr.value
                else:
                    inner.error(f'"{attr.name}" must be a string', attr.line)
            for nested in block.body.blocks:
                inner.error(f'unexpected block "{nested.type}"', nested.line)
            return out
        value = self._typed(key, dict, "a map of strings")
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value.values()):
            self.error(f'"{key}" must be a map of strings', self.line_of(key))
            return None
        return dict(value)

    def mapping(self, key: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self._typed(key, dict, "an object")
        return value

    def duration(self, key: str) -> int | None:
        attr = self.raw(key)
        if attr is None or attr.value is None:
            return None
        value = attr.value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # HCL1 decoded bare numbers as nanoseconds; accept 0 only, which is unambiguous.
            if value == 0:
                return 0
            self.error(f'"{key}" must be a duration string such as "5s"', attr.line)
            return None
        if not isinstance(value, str):
            self.error(f'"{key}" must be a duration string such as "5s"', attr.line)
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(f'"{key}": {exc}', attr.line)
            return None

    # --- blocks --------------------------------------------------------------------------

    def blocks(self, key: str, labels: int = 0) -> list[Block]:
        """Blocks of one type. For unlabeled blocks, `key = { ... }` (HCL1 style, and the
        JSON form) is accepted as the same thing."""
        self._used.add(key)
        found = [b for b in self.body.blocks if b.type == key]
        for b in found:
            if len(b.labels) != labels:
                want = "no label" if labels == 0 else f"{labels} label(s)"
                self.error(f'block "{key}" takes {want}, found {len(b.labels)}', b.line)
        found = [b for b in found if len(b.labels) == labels]
        attr = self._attrs.get(key)
        if attr is not None and labels == 0:
            items = attr.value if isinstance(attr.value, list) else [attr.value]
            for item in items:
                if not isinstance(item, dict):
                    self.error(f'"{key}" must be a block: write `{key} {{ ... }}`', attr.line)
                    continue
                found.append(_object_block(key, item, attr))
        elif attr is not None:
            self.error(
                f'"{key}" must be a block with a label: write `{key} "<type>" {{ ... }}`',
                attr.line,
            )
        return found

    def single_block(self, key: str) -> Block | None:
        found = self.blocks(key)
        for extra in found[1:]:
            self.error(f"only one '{key}' block can be configured", extra.line)
        return found[0] if found else None

    def child(self, block: Block, where: str) -> BodyReader:
        return BodyReader(
            block.body,
            file=self.file,
            where=(*self.where, where),
            problems=self.problems,
            line=block.line,
        )

    def finish(self, hints: dict[str, str] | None = None) -> None:
        """Report every key that nobody asked about."""
        hints = hints or {}
        seen: set[str] = set()
        known = sorted(self._used)
        for name, line in [(a.name, a.line) for a in self.body.attributes] + [
            (b.type, b.line) for b in self.body.blocks
        ]:
            if name in self._used or name in seen:
                continue
            seen.add(name)
            message = f'invalid key "{name}"'
            if name in hints:
                message += f": {hints[name]}"
            else:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
                if close:
                    message += f' (did you mean "{close[0]}"?)'
            self.error(message, line)


def _object_block(key: str, obj: dict[str, Any], attr: Attribute) -> Block:
    """Turn `key = { a = 1 }` into the equivalent block (nested objects stay attributes)."""
    body = Body(
        attributes=[
            Attribute(k, v, attr.line, attr.column, attr.start_byte, attr.end_byte)
            for k, v in obj.items()
        ]
    )
    return Block(key, [], body, attr.line, attr.column, attr.start_byte, attr.end_byte)
