"""What a task created through the API may use: which module sources and which
configured providers. A module is a program the daemon runs, and a provider block holds
credentials, so an API caller (even one with the token) gets only what the operator
allowed, in the manner of Argo CD's `sourceRepos`. Tasks from the sources are trusted as
they are: they went through review in git, or were written by someone with the host.

Without an `api_tasks` block: local modules inside a task source or the configuration's
directory, and no provider. With one, `modules` lists what is allowed:
- local path globs, written relative to the configuration file ("./modules/*", or
  absolute): matched against the module's resolved directory;
- anything else is a glob over the module source as written: registry addresses
  ("acme/*/aws", "registry.example.com/acme/*") and git URLs ("git::https://github.com/acme/*");
and `providers` names the providers a task may list ("*": every configured one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from reconciler.runner.workspace import is_local_module
from reconciler.settings.model import ApiTasksSettings
from reconciler.taskfiles.model import TaskSpec


@dataclass(frozen=True)
class ApiTaskPolicy:
    settings: ApiTasksSettings = field(default_factory=ApiTasksSettings)
    # The default's roots: the task sources' directories (as they are now: a reload may
    # change them) and the configuration's directory.
    source_roots: Callable[[], Sequence[Path]] = tuple
    config_dir: Path = Path(".")

    @property
    def roots(self) -> tuple[Path, ...]:
        return (*self.source_roots(), self.config_dir)

    def refusal(self, spec: TaskSpec, base_dir: Path | None) -> str | None:
        """Why the task may not be created through the API; None when it may."""
        module = spec.module or ""
        if not self._module_allowed(module, base_dir):
            return (
                f'module "{module}" is not allowed for a task created through the API: '
                + self._modules_rule()
            )
        for provider in spec.providers or ():
            name = provider.split(".", 1)[0]
            if not self._provider_allowed(name):
                return (
                    f'provider "{provider}" is not allowed for a task created through the '
                    "API: " + self._providers_rule()
                )
        return None

    # --- modules -------------------------------------------------------------------------

    def _module_allowed(self, module: str, base_dir: Path | None) -> bool:
        patterns = self.settings.modules
        local = is_local_module(module)
        if local:
            target = Path(os.path.normpath(os.path.join(base_dir or Path.cwd(), module)))
            real = Path(os.path.realpath(target))
        if patterns is None:
            return local and any(_inside(real, root) for root in self.roots)
        for pattern in patterns:
            if is_local_module(pattern):
                if local and self._local_match(pattern, target, real):
                    return True
            elif not local and fnmatchcase(module, pattern):
                return True
        return False

    def _local_match(self, pattern: str, target: Path, real: Path) -> bool:
        absolute = os.path.normpath(os.path.join(self.config_dir, pattern))
        return fnmatchcase(str(target), absolute) and fnmatchcase(str(real), _real(absolute))

    def _modules_rule(self) -> str:
        s = self.settings
        if s.modules is None:
            roots = ", ".join(str(r) for r in self.roots) or "none"
            return (
                "by default only local modules inside a task source or the configuration's "
                f"directory are ({roots}); allow others with api_tasks {{ modules = [...] }}"
            )
        return f"api_tasks modules ({s.modules_at}) allows {_list(s.modules)}"

    # --- providers -----------------------------------------------------------------------

    def _provider_allowed(self, name: str) -> bool:
        allowed = self.settings.providers
        return allowed is not None and ("*" in allowed or name in allowed)

    def _providers_rule(self) -> str:
        s = self.settings
        if s.providers is None:
            return (
                "by default a task created through the API may use no provider; allow them "
                'with api_tasks { providers = ["name", ...] } (or ["*"])'
            )
        return f"api_tasks providers ({s.providers_at}) allows {_list(s.providers)}"


def _inside(path: Path, root: Path) -> bool:
    return path.is_relative_to(Path(os.path.realpath(root)))


def _real(pattern: str) -> str:
    """The pattern with its fixed leading directories resolved (a /etc -> /private/etc
    link must not make an allowed module fail the check)."""
    head, sep, _ = pattern.partition("*")
    directory = os.path.dirname(head) if sep else pattern
    tail = pattern[len(directory) :]
    return os.path.realpath(directory) + tail


def _list(items: Sequence[str]) -> str:
    return ", ".join(f'"{i}"' for i in items) if items else "nothing"
