"""A git repository as the source of truth, with API changes committed back.

`GitSource` and `GitStatus` are imported on first use: they need GitPython, and GitPython
the git binary, while the `source "git"` block (`settings`) is read on any machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.sources.git.options import GitOptions, git_environment, mask_url
from reconciler.sources.git.settings import GitAuthorSettings, GitSourceSettings

if TYPE_CHECKING:
    from reconciler.sources.git.source import GitSource, GitStatus

__all__ = [
    "GitAuthorSettings",
    "GitOptions",
    "GitSource",
    "GitSourceSettings",
    "GitStatus",
    "git_environment",
    "mask_url",
]


def __getattr__(name: str) -> object:
    if name in ("GitSource", "GitStatus"):
        from reconciler.sources.git import source

        return getattr(source, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
