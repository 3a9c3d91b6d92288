"""What a condition kind is: the `ConditionKind` every kind module fills in.

A kind is one `condition "<name>"` block type and, for some kinds, the `module_input
"<name>"` block type of the same name. Its module defines the dataclasses (the task model)
and one `ConditionKind` describing them: the fields as a declarative list (`Field`), its
validation, how the API shows it, its OpenAPI description, the module variable it feeds.
Generic code reads the description: task files and API requests are decoded by the fields,
written back and encoded from them, shown with their defaults, and described in OpenAPI by
their descriptions.

What the layers above do with a kind (the trigger source that fires its condition, the
Consul data its module variable is read from, its cron schedule) the kind states as data
and pure functions here, since this layer cannot import them: `trigger`, `services`,
`catalog_services`, `consul_kv` and `cron`. The Consul data is described by the
`*Selection` protocols, which a kind's own dataclasses satisfy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from reconciler.taskfiles.goregexp import RegexpError, compile_regexp

FieldType = Literal["str", "bool", "list", "map"]
"""A field's value: a string, a bool, a list of strings, or a map of strings."""

_EMPTY: dict[str, Callable[[], Any]] = {
    "str": str,
    "bool": bool,
    "list": list,
    "map": dict,
}


@dataclass(frozen=True)
class Field:
    """One attribute of a condition or module_input block, in every form it takes: the
    same name in a task file, a JSON task file, an API request and the API's answer."""

    name: str
    type: FieldType
    # What the API shows when the field is unset; None: the type's empty value ("",
    # false, [], {}).
    shown: str | bool | None = None
    # The field's description in the OpenAPI schema.
    description: str | None = None
    # Whether the OpenAPI schema marks it required. Validation says so in its own words.
    required: bool = False

    def show(self, value: Any) -> Any:
        """The field as the API shows it: `value`, or the shown default when unset."""
        if value is None:
            return self.shown if self.shown is not None else _EMPTY[self.type]()
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, dict):
            return dict(value)
        return value


# Fields several kinds share.
DATACENTER = Field("datacenter", "str")
NAMESPACE = Field("namespace", "str")
REGEXP = Field("regexp", "str", description="A regular expression over service names.")
USE_AS_MODULE_INPUT = Field(
    "use_as_module_input",
    "bool",
    shown=True,
    description="Whether the condition's data is also a module input (default true).",
)


@dataclass(frozen=True)
class Invalid:
    """One validation finding."""

    path: tuple[str | int, ...]  # field path, for line lookup: ("condition", "regexp")
    where: tuple[str, ...]  # shown before the message: ('condition "services"',)
    message: str


def check_regexp(pattern: str) -> str | None:
    """RE2's verdict, as Go's regexp.Compile gives it to CTS."""
    try:
        compile_regexp(pattern)
    except RegexpError as exc:
        return f'"regexp" is not a valid regular expression (RE2 syntax, as in Go): {exc}'
    return None


# --- the Consul data a kind reads ----------------------------------------------------------


class ServicesSelection(Protocol):
    """What the `services` variable is read from: the passing instances of the named
    services, or of every service whose name matches `regexp`."""

    @property
    def names(self) -> tuple[str, ...] | None: ...
    @property
    def regexp(self) -> str | None: ...
    @property
    def datacenter(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def filter(self) -> str | None: ...
    @property
    def cts_user_defined_meta(self) -> dict[str, str] | None: ...


class CatalogServicesSelection(Protocol):
    """What the `catalog_services` variable is read from: the names (and tags) of the
    services whose name matches `regexp`."""

    @property
    def regexp(self) -> str | None: ...
    @property
    def datacenter(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...
    @property
    def node_meta(self) -> dict[str, str] | None: ...


class KVSelection(Protocol):
    """What the `consul_kv` variable is read from: one key, or every key under `path`."""

    @property
    def path(self) -> str | None: ...
    @property
    def recurse(self) -> bool | None: ...
    @property
    def datacenter(self) -> str | None: ...
    @property
    def namespace(self) -> str | None: ...


# --- the kind ------------------------------------------------------------------------------

C = TypeVar("C")  # the condition's dataclass
M = TypeVar("M")  # the module_input's dataclass (Never for a kind without one)

Trigger = Literal["consul", "schedule"]


class ConditionKind(Generic[C, M]):
    """One condition kind. A kind module subclasses it, sets the class attributes and
    overrides the hooks its kind needs; the table lists one instance per kind."""

    name: ClassVar[str]  # in task files: condition "consul-kv"
    api_name: ClassVar[str]  # in the API: "consul_kv"
    condition: type[C]
    condition_fields: ClassVar[tuple[Field, ...]]  # in the dataclass's field order
    condition_schema: ClassVar[str]  # its OpenAPI schema's name
    module_input: type[M] | None = None  # None: no module_input of this kind
    input_fields: ClassVar[tuple[Field, ...]] = ()
    input_schema: ClassVar[str] = ""
    # The module variable the kind's data fills ("" none): a condition and a module_input
    # cannot both feed one (cts-spec 1.4 rule 8).
    variable: ClassVar[str] = ""
    # The trigger source that fires a task with this condition.
    trigger: ClassVar[Trigger]
    # Whether the task's buffer period applies to its triggers (CTS: not to schedules).
    buffered: ClassVar[bool] = True
    # The task of the OpenAPI document's "Create a task" example for this kind.
    example: ClassVar[Mapping[str, Any]]

    def fields(self, item: C | M) -> tuple[Field, ...]:
        """The fields of `item`, a condition or a module_input of this kind."""
        return self.condition_fields if type(item) is self.condition else self.input_fields

    def validate(
        self, item: C | M, path: tuple[str | int, ...], where: tuple[str, ...]
    ) -> list[Invalid]:
        """What is wrong with `item`; `path` and `where` locate it in its task."""
        return []

    def represent(self, item: C | M) -> dict[str, Any]:
        """The item as the API shows it: every field, its default when unset, keys in
        alphabetical order as in CTS's API."""
        shown = {f.name: f.show(getattr(item, f.name)) for f in self.fields(item)}
        return dict(sorted(shown.items()))

    def feeds(self, item: C | M) -> bool:
        """Whether the item's data is passed to the module: a module_input's always, a
        condition's unless `use_as_module_input = false`."""
        return getattr(item, "use_as_module_input", None) is not False

    def summary(self, shown: Mapping[str, Any]) -> str:
        """The detail `task list` shows for a condition of this kind, from the API's
        representation of it."""
        return ""

    # What the item reads from Consul, for the `services`, `catalog_services` and
    # `consul_kv` variables and for the Consul trigger source (None: nothing).

    def services(self, item: C | M) -> ServicesSelection | None:
        return None

    def catalog_services(self, item: C | M) -> CatalogServicesSelection | None:
        return None

    def consul_kv(self, item: C | M) -> KVSelection | None:
        return None

    def cron(self, item: C | M) -> str | None:
        """The cron expression the schedule trigger source fires the item's task on."""
        return None
