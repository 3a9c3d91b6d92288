"""One file's view of a block: only the fields it set, each with where it was set.

Merging partials (later files win field by field) and applying defaults once at the end is
what lets a second file override `consul { token }` without resetting `consul { address }`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler._core.errors import Location
from reconciler.settings.schema import BlockSpec, Kind
from reconciler.taskfiles.decode import BodyReader, type_name
from reconciler.taskfiles.hcl import Block

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
_JSON_NOT_OBJECT = "__invalid__"


@dataclass(frozen=True)
class Field:
    value: Any
    at: Location


@dataclass
class Partial:
    at: Location  # the block as last written
    fields: dict[str, Field] = field(default_factory=dict)
    blocks: dict[str, Partial] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        f = self.fields.get(name)
        return default if f is None else f.value

    def has(self, name: str) -> bool:
        return name in self.fields

    def loc(self, *names: str) -> Location:
        """Where the first of `names` that is set was set, else where the block is."""
        for name in names:
            f = self.fields.get(name)
            if f is not None:
                return f.at
        return self.at

    def block(self, name: str) -> Partial:
        found = self.blocks.get(name)
        return found if found is not None else Partial(self.at)


def decode_block(r: BodyReader, spec: BlockSpec, base_dir: Path) -> Partial:
    """Read the fields of `spec` that the body sets; unknown keys become problems."""
    partial = Partial(Location(r.file, r.line))
    if _not_an_object(r):
        return partial
    if spec.free_form:
        for key, value in body_to_dict(r).items():
            partial.fields[key] = Field(value, Location(r.file, r.line_of(key)))
        return partial
    for name, kind in spec.fields.items():
        value = read_field(r, name, kind, base_dir)
        if value is not None:
            partial.fields[name] = Field(value, Location(r.file, r.line_of(name)))
    for name, sub in spec.blocks.items():
        block = _single_block(r, name, sub)
        if block is not None:
            where = f'{name} "{sub.label}"' if sub.label else name
            partial.blocks[name] = decode_block(r.child(block, where), sub, base_dir)
    r.finish(spec.hints)
    return partial


def _single_block(r: BodyReader, name: str, spec: BlockSpec) -> Block | None:
    if spec.label is None:
        return r.single_block(name)
    chosen: Block | None = None
    for block in r.blocks(name, labels=1):
        label = block.labels[0]
        if label != spec.label:
            hint = spec.label_hints.get(label)
            r.error(
                f'invalid key "{name}.{label}": {hint}'
                if hint
                else f'unsupported {name} "{label}"; expected "{spec.label}"',
                block.line,
            )
        elif chosen is not None:
            r.error(f"only one '{name}' block can be configured", block.line)
        else:
            chosen = block
    return chosen


def read_field(r: BodyReader, name: str, kind: Kind, base_dir: Path) -> Any:
    """The typed value of `name`, or None when unset, null or invalid (then a problem)."""
    if kind is Kind.STRING:
        return r.string(name)
    if kind is Kind.BOOL:
        return _bool(r, name)
    if kind is Kind.INT:
        return _int(r, name)
    if kind is Kind.DURATION:
        return r.duration(name)
    if kind is Kind.PATH:
        text = r.string(name)
        if not text:
            return text
        return os.path.normpath(os.path.join(base_dir, text))
    if kind is Kind.BACKEND:
        return _backend(r, name)
    if kind is Kind.STRINGS:
        return r.strings(name)
    if kind is Kind.RETRY:
        raw = r.value(name)
        if isinstance(raw, str) and raw == "background":
            return raw
        if raw is None or (isinstance(raw, int) and not isinstance(raw, bool)):
            return raw
        r.error(f'"{name}" must be {kind.value}', r.line_of(name))
        return None
    value = _map(r, name)
    if (
        kind is Kind.STRING_MAP
        and value is not None
        and not all(isinstance(v, str) for v in value.values())
    ):
        r.error(f'"{name}" must be a map of strings', r.line_of(name))
        return None
    return value


# CTS decodes with mapstructure's WeaklyTypedInput, so `"port": "8502"` is a valid port.


def _bool(r: BodyReader, name: str) -> bool | None:
    attr = r.raw(name)
    if attr is not None and isinstance(attr.value, str) and attr.value in _TRUE | _FALSE:
        return attr.value in _TRUE
    return r.boolean(name)


def _int(r: BodyReader, name: str) -> int | None:
    attr = r.raw(name)
    if attr is not None and isinstance(attr.value, str):
        text = attr.value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
    return r.integer(name)


def _map(r: BodyReader, name: str) -> dict[str, Any] | None:
    """`name = { ... }` or, as CTS's HCL1 allowed, a block `name { ... }`."""
    attr = r.raw(name)
    if attr is not None:
        if attr.value is None:
            return None
        if not isinstance(attr.value, dict):
            r.error(f'"{name}" must be an object, not {type_name(attr.value)}', attr.line)
            return None
        return dict(attr.value)
    found: dict[str, Any] | None = None
    for block in (b for b in r.body.blocks if b.type == name):
        if block.labels:
            r.error(f'block "{name}" takes no label, found {len(block.labels)}', block.line)
        elif found is not None:
            r.error(f"only one '{name}' block can be configured", block.line)
        else:
            found = body_to_dict(r.child(block, name))
    return found


def _backend(r: BodyReader, name: str) -> dict[str, dict[str, Any]] | None:
    """`backend "consul" { ... }` blocks, or `backend = { consul = { ... } }`."""
    attr = r.raw(name)
    if attr is not None:
        value = attr.value
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            r.error(
                f'"{name}" must be an object keyed by backend type, e.g. {name} "consul" {{ ... }}',
                attr.line,
            )
            return None
        return {k: dict(v) for k, v in value.items()}
    found: dict[str, dict[str, Any]] = {}
    for block in (b for b in r.body.blocks if b.type == name):
        if len(block.labels) != 1:
            r.error(
                f'block "{name}" takes 1 label (the backend type), found {len(block.labels)}',
                block.line,
            )
            continue
        label = block.labels[0]
        if label in found:
            r.error(f'only one {name} "{label}" block can be configured', block.line)
            continue
        found[label] = body_to_dict(r.child(block, f'{name} "{label}"'))
    return found or None


def body_to_dict(r: BodyReader) -> dict[str, Any]:
    """A free-form body as plain values: nested blocks become objects, labelled blocks
    objects keyed by label, a block type written several times a list."""
    out: dict[str, Any] = {}
    if _not_an_object(r):
        return out
    for attr in r.body.attributes:
        out.setdefault(attr.name, attr.value)  # BodyReader reported any duplicate
    by_type: dict[str, list[Block]] = {}
    for block in r.body.blocks:
        by_type.setdefault(block.type, []).append(block)
    for name, blocks in by_type.items():
        if name in out:
            r.error(f'"{name}" is set both as an attribute and as a block', blocks[0].line)
            continue
        if not blocks[0].labels:
            values = [body_to_dict(r.child(b, name)) for b in blocks]
            out[name] = values[0] if len(values) == 1 else values
            continue
        keyed: dict[str, Any] = {}
        for block in blocks:
            target = keyed
            for label in block.labels[:-1]:
                target = target.setdefault(label, {})
            if block.labels[-1] in target:
                labels = " ".join(f'"{x}"' for x in block.labels)
                r.error(f"duplicate block {name} {labels}", block.line)
                continue
            target[block.labels[-1]] = body_to_dict(r.child(block, name))
        out[name] = keyed
    return out


def _not_an_object(r: BodyReader) -> bool:
    # The JSON reader keeps a non-object where a block belongs as this attribute.
    attr = r.raw(_JSON_NOT_OBJECT)
    if attr is None:
        return False
    r.error(f"must be an object, not {type_name(attr.value)}", attr.line)
    return True


# --- merging -------------------------------------------------------------------------------


def merge(base: Partial | None, over: Partial, spec: BlockSpec) -> Partial:
    """`over` (a later file) wins field by field; maps merge key by key."""
    if base is None:
        return over
    out = Partial(over.at, dict(base.fields), dict(base.blocks))
    for name, f in over.fields.items():
        old = out.fields.get(name)
        if old is not None:
            f = Field(_merge_value(old.value, f.value, spec, name), f.at)
        out.fields[name] = f
    for name, block in over.blocks.items():
        out.blocks[name] = merge(base.blocks.get(name), block, spec.blocks[name])
    return out


def _merge_value(old: Any, new: Any, spec: BlockSpec, name: str) -> Any:
    if spec.free_form:
        return deep_merge(old, new)
    kind = spec.fields.get(name)
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return new
    if kind is Kind.MAP:
        return {**old, **new}
    if kind is Kind.BACKEND:
        merged = dict(old)
        for backend, config in new.items():
            merged[backend] = {**merged.get(backend, {}), **config}
        return merged
    return new


def deep_merge(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for key, value in new.items():
            out[key] = deep_merge(out[key], value) if key in out else value
        return out
    return new
