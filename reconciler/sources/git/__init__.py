"""A git repository as the source of truth, with API changes committed back."""

from reconciler.sources.git.options import GitOptions, git_environment, mask_url
from reconciler.sources.git.source import GitSource, GitStatus

__all__ = [
    "GitOptions",
    "GitSource",
    "GitStatus",
    "git_environment",
    "mask_url",
]
