"""Parse results as plain JSON values, for the parse cache: reading the cache runs no code.

The encoding follows the dataclasses' type hints, so a field added to the task model is
cached without touching this module. A field of a type the codec does not know fails when
the codec is built (at import, so in every test run). The `SCHEMA` fingerprint changes with
any field or type change, so a cache written by another model is re-parsed, never mis-read.

Wire shapes: a dataclass is an object of its fields that differ from their defaults; a
union of dataclasses is `[class name, object]`; tuples and lists are arrays; a dict with
non-string keys is an array of `[key, value]` pairs; `Any` (literal HCL values) is stored
as is. Decoding checks every type, so a damaged file is an error, not a wrong task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

from reconciler.taskfiles.tasks import DecodedFile

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]

# orjson writes integers of up to 64 bits, and writes NaN and infinities as null: such a
# value is not cached (its file is parsed again at the next start) rather than altered.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class Unencodable(ValueError):
    """A value the data-only format cannot hold exactly."""


class CacheFormatError(ValueError):
    """Cached data that does not match the model."""


def _plain(value: Any) -> Any:
    """Check a literal HCL value (str, number, bool, null, list, object) and return it."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise Unencodable(f"integer {value} does not fit in 64 bits")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise Unencodable(f"number {value} is not finite")
        return value
    if kind is list:
        for item in value:
            _plain(item)
        return value
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise Unencodable(f"object key {key!r} is not a string")
            _plain(item)
        return value
    raise Unencodable(f"{kind.__name__} is not a literal value")


def _scalar_types(hint: Any) -> frozenset[type] | None:
    """The types of a scalar hint (str, int | str, ...), None for anything else."""
    members = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else ()
    kinds = set(members or (hint,))
    return frozenset(kinds) if kinds <= {str, int, float, bool} else None


def _identity(value: Any) -> Any:
    return value


def _scalar(kind: type) -> tuple[Encode, Decode]:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise CacheFormatError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    # orjson refuses an integer beyond 64 bits itself (the entry is then not cached), but
    # writes a float NaN or infinity as null: floats are checked here.
    return (_plain if kind is float else _identity), check


class _Builder:
    """Builds (encode, decode) for a type hint, once, and records the schema it saw."""

    def __init__(self) -> None:
        self.schema: list[str] = []
        self._classes: dict[type, tuple[Encode, Decode]] = {}

    def build(self, hint: Any) -> tuple[Encode, Decode]:
        if hint is Any:
            return _plain, _identity
        if hint in (str, int, float, bool):
            return _scalar(hint)
        if hint is type(None):
            return _scalar(type(None))
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self._dataclass(hint)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin is Literal:
            return self._literal(args)
        if origin in (Union, types.UnionType):
            return self._union(args)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return self._sequence(args[0], tuple)
        if origin is list and len(args) == 1:
            return self._sequence(args[0], list)
        if origin is dict and len(args) == 2:
            return self._dict(args[0], args[1])
        raise TypeError(f"the parse cache cannot encode {hint!r}")

    def _literal(self, allowed: tuple[Any, ...]) -> tuple[Encode, Decode]:
        def check(value: Any) -> Any:
            if value not in allowed:
                raise CacheFormatError(f"{value!r} is not one of {allowed!r}")
            return value

        return _identity, check

    def _union(self, members: tuple[Any, ...]) -> tuple[Encode, Decode]:
        optional = type(None) in members
        rest = [m for m in members if m is not type(None)]
        if len(rest) == 1:
            enc, dec = self.build(rest[0])
        elif all(dataclasses.is_dataclass(m) for m in rest):
            enc, dec = self._tagged(rest)
        elif all(m in (str, int, float, bool) for m in rest):
            allowed = tuple(rest)

            def check(value: Any) -> Any:
                if type(value) not in allowed:
                    raise CacheFormatError(f"unexpected {type(value).__name__}")
                return value

            enc, dec = (_plain if float in allowed else _identity), check
        else:
            raise TypeError(f"the parse cache cannot encode a union of {members!r}")
        if not optional:
            return enc, dec
        return (
            enc if enc in (_identity, _plain) else lambda v: None if v is None else enc(v),
            lambda v: None if v is None else dec(v),
        )

    def _tagged(self, classes: list[type]) -> tuple[Encode, Decode]:
        by_name = {c.__name__: (c, *self.build(c)) for c in classes}

        def encode(value: Any) -> Any:
            entry = by_name.get(type(value).__name__)
            if entry is None or entry[0] is not type(value):
                raise Unencodable(f"unexpected {type(value).__name__}")
            return [type(value).__name__, entry[1](value)]

        def decode(value: Any) -> Any:
            if type(value) is not list or len(value) != 2 or value[0] not in by_name:
                raise CacheFormatError(f"expected one of {sorted(by_name)}")
            return by_name[value[0]][2](value[1])

        return encode, decode

    def _sequence(self, item: Any, kind: type) -> tuple[Encode, Decode]:
        enc, dec = self.build(item)
        scalars = _scalar_types(item)

        def encode(value: Any) -> Any:
            return [enc(v) for v in value]

        def decode(value: Any) -> Any:
            if type(value) is not list:
                raise CacheFormatError(f"expected an array, got {type(value).__name__}")
            return kind([dec(v) for v in value])

        if enc is _identity:
            encode = _identity  # orjson writes tuples and lists of scalars as they are

        def decode_scalars(value: Any) -> Any:
            # The common case (names, field paths): one type check per item, no call.
            if type(value) is not list:
                raise CacheFormatError(f"expected an array, got {type(value).__name__}")
            for v in value:
                if type(v) not in scalars:  # type: ignore[operator]
                    raise CacheFormatError(f"unexpected {type(v).__name__} in an array")
            return value if kind is list else kind(value)

        return encode, decode if scalars is None else decode_scalars

    def _dict(self, key: Any, item: Any) -> tuple[Encode, Decode]:
        enc, dec = self.build(item)
        if key is str:

            def encode(value: Any) -> Any:
                return {k: enc(v) for k, v in value.items()}

            def decode(value: Any) -> Any:
                if type(value) is not dict:
                    raise CacheFormatError(f"expected an object, got {type(value).__name__}")
                return {k: dec(v) for k, v in value.items()}

            return encode, decode
        kenc, kdec = self.build(key)

        def encode_pairs(value: Any) -> Any:
            return [[kenc(k), enc(v)] for k, v in value.items()]

        def decode_pairs(value: Any) -> Any:
            if type(value) is not list:
                raise CacheFormatError(f"expected an array, got {type(value).__name__}")
            return {kdec(k): dec(v) for k, v in value}

        return encode_pairs, decode_pairs

    def _dataclass(self, cls: type) -> tuple[Encode, Decode]:
        known = self._classes.get(cls)
        if known is not None:
            return known
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        self.schema.append(f"{cls.__module__}.{cls.__qualname__}")
        codecs: dict[str, tuple[Encode, Decode]] = {}
        for f in fields:
            self.schema.append(f"  {f.name}: {hints[f.name]!r}")
            codecs[f.name] = self.build(hints[f.name])
        names = [f.name for f in fields]
        fields_by_name = {f.name: f for f in fields}

        # (name, encoder or None for "as is", default value, default factory)
        plan = [
            (
                name,
                None if codecs[name][0] is _identity else codecs[name][0],
                fields_by_name[name].default,
                fields_by_name[name].default_factory,
            )
            for name in names
        ]
        missing = dataclasses.MISSING

        def encode(value: Any) -> Any:
            out: dict[str, Any] = {}
            for name, enc, default, factory in plan:
                v = getattr(value, name)
                # Most optional fields are unset: leaving them out keeps the file small.
                if default is not missing:
                    # Same type too: 0 == False, yet they are different values.
                    if v is default or (type(v) is type(default) and v == default):
                        continue
                elif factory is not missing and v == factory():
                    continue
                out[name] = v if enc is None else enc(v)
            return out

        decoders = {name: codec[1] for name, codec in codecs.items()}

        def decode(value: Any) -> Any:
            if type(value) is not dict:
                raise CacheFormatError(f"expected an object for {cls.__name__}")
            try:
                return cls(**{k: decoders[k](v) for k, v in value.items()})
            except KeyError as exc:
                raise CacheFormatError(f"{cls.__name__} has no field {exc}") from None
            except TypeError as exc:  # a required field is missing
                raise CacheFormatError(f"{cls.__name__}: {exc}") from None

        self._classes[cls] = (encode, decode)
        return encode, decode


def _build() -> tuple[Encode, Decode, str]:
    builder = _Builder()
    encode, decode = builder.build(DecodedFile)
    schema = hashlib.sha256("\n".join(builder.schema).encode()).hexdigest()[:16]
    return encode, decode, schema


encode_file, decode_file, SCHEMA = _build()
