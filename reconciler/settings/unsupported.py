"""Settings that are read (CTS files load unchanged) but that nothing in the daemon acts on.

Each one that a configuration sets becomes a warning naming it, logged when the daemon
starts and printed by `reconciler validate`, so that no setting is silently ignored. This
table is the one place that knows them: the feature that starts acting on a setting removes
its entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from reconciler._core.errors import Location, Problem
from reconciler.settings.partial import Partial

# (path of the setting: blocks then the key, what happens instead)
NOT_ACTED_ON: dict[tuple[str, ...], str] = {
    ("client_type",): "it swaps Terraform for CTS's development printer or test mock; "
    "tasks here always run Terraform",
    ("syslog",): "logs go to standard error (the journal, under systemd)",
    ("consul", "kv_namespace"): "CTS itself does not use it outside its Enterprise "
    "edition, and Terraform's consul backend has no namespace setting",
    ("driver", "version"): "nothing is installed: the Terraform bundled with the daemon "
    'runs, or the binary that driver "terraform" path names',
}


def _where(path: Sequence[str]) -> str:
    if path[0] == "driver":
        path = ['driver "terraform"', *path[1:]]
    return " ".join(path)


def _find(top: Partial, repeated: Mapping[str, Location], path: Sequence[str]) -> Location | None:
    """Where the setting at `path` is set, or None if no file sets it."""
    if len(path) == 1 and path[0] in repeated:
        return repeated[path[0]]
    block = top
    for name in path[:-1]:
        found = block.blocks.get(name)
        if found is None:
            return None
        block = found
    last = path[-1]
    if last in block.blocks:
        return block.blocks[last].at
    if block.has(last):
        return block.loc(last)
    return None


def unsupported_settings(top: Partial, repeated: Mapping[str, Location]) -> Iterator[Problem]:
    """A warning for every setting of NOT_ACTED_ON that the merged configuration sets.

    `repeated` says where the first of each repeatable block (service) is, which the merged
    top-level partial does not hold."""
    for path, instead in NOT_ACTED_ON.items():
        at = _find(top, repeated, path)
        if at is not None:
            yield Problem(f"{_where(path)} is not supported and has no effect: {instead}", (), at)
