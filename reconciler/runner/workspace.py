"""A task's working directory `<working_dir>/<task name>/` and the root module in it.

Relative paths in a task (`module`, `variable_files`, `working_dir`) resolve against the
directory of the file that defines the task, so a module kept next to the task files in a
repository works wherever the daemon runs. A local module is then written into main.tf as
a path relative to the workspace, which Terraform reads in place at every run.

The workspace knows whether it needs `terraform init`: a marker inside `.terraform/`
records a digest of the init-relevant files (everything but terraform.tfvars, which only
carries data) and of the Terraform in use. A changed definition, a different Terraform, or
a deleted `.terraform/` means init again; a restart with nothing changed does not.

Generated files are written with a rename but without fsync: they are derived data, and
after a crash the digest check regenerates anything that did not reach the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler._core.errors import ConfigError, ReconcilerError
from reconciler._core.fsutil import TEMP_PREFIX, private_dir
from reconciler.runner import rootmodule
from reconciler.runner.inputs import ModuleInputs, declared_inputs
from reconciler.runner.state import KVReader, Placement, StatePolicy, describe, place
from reconciler.runner.templates import ProviderTemplates, RenderedProvider, scrub
from reconciler.settings.model import TerraformDriverSettings, TerraformProviderSettings
from reconciler.taskfiles import hcl
from reconciler.taskfiles.model import TaskSpec

log = logging.getLogger("reconciler.state")

INIT_MARKER = Path(".terraform") / "reconciler-init"
LOCAL_BACKEND: Mapping[str, Mapping[str, Any]] = {"local": {}}
# Where throwaway workspaces (POST ?run=inspect) live, under the working directory.
SCRATCH = Path(".reconciler") / "inspect"

_OPTIONAL = ("variables.module.tf", "variables.auto.tfvars", "providers.auto.tfvars")


class WorkspaceError(ReconcilerError):
    """The task's definition cannot be turned into a root module (e.g. a variable file
    that cannot be read)."""

    reason = "WorkspaceInvalid"


def is_local_module(source: str) -> bool:
    """Terraform's rule: local paths start with ./ or ../; we take absolute paths too."""
    return source.startswith(("./", "../", "/")) or source in (".", "..")


def module_source(source: str, base_dir: Path, workspace: Path) -> str:
    """`source` as the workspace's main.tf must say it."""
    if not is_local_module(source):
        return source
    target = os.path.normpath(os.path.join(base_dir, source))
    relative = os.path.relpath(target, workspace)
    return relative if relative.startswith("..") else "./" + relative


def task_variables(spec: TaskSpec, base: Path) -> dict[str, Any]:
    """The task's variable values: its variable_files in order (later files win, paths
    relative to `base`), then its `variables`."""
    values: dict[str, Any] = {}
    for name in spec.variable_files or ():
        path = Path(os.path.normpath(os.path.join(base, name)))
        try:
            body = hcl.parse(path.read_bytes(), str(path))
        except OSError as exc:
            raise WorkspaceError(
                f'task "{spec.name}": variable file {path} cannot be read: {exc.strerror}'
            ) from None
        except ConfigError as exc:
            raise WorkspaceError(f'task "{spec.name}": {exc}') from None
        if body.blocks:
            raise WorkspaceError(
                f'task "{spec.name}": variable file {path} may only hold `name = value` '
                f"lines, found a {body.blocks[0].type!r} block on line {body.blocks[0].line}"
            )
        values.update({a.name: a.value for a in body.attributes})
    values.update(spec.variables or {})
    return values


def copy_local_state(source: Path, target: Path) -> None:
    """Copy a workspace's local state files (default and per-workspace) to another
    workspace directory, so that a plan there starts from the same state."""
    state = source / "terraform.tfstate"
    if state.is_file() and not state.is_symlink():
        shutil.copy2(state, target / "terraform.tfstate")
    per_workspace = source / "terraform.tfstate.d"
    if per_workspace.is_dir() and not per_workspace.is_symlink():
        shutil.copytree(per_workspace, target / "terraform.tfstate.d", symlinks=True)


def holds_state(directory: Path) -> bool:
    """Terraform wrote local state in this workspace (default or named workspaces)."""
    return (directory / "terraform.tfstate").exists() or (
        directory / "terraform.tfstate.d"
    ).exists()


# What module_digest reads of a module: files up to this size by content, at most this many.
MODULE_FILE_CAP = 1 << 20
MODULE_FILES = 10_000


def _file_fingerprint(path: Path) -> bytes:
    """A regular file's content (or, above the cap, its size and mtime); a symlink's
    target name; nothing for anything else. Never follows a link, never blocks."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return b"link:" + os.readlink(path).encode("utf-8", "surrogateescape")
        if not stat.S_ISREG(st.st_mode):
            return b"special"
        if st.st_size > MODULE_FILE_CAP:
            return f"large:{st.st_size}:{st.st_mtime_ns}".encode()
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return b"unreadable"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the lstat
            return b"special"
        return os.read(fd, MODULE_FILE_CAP + 1)
    except OSError:
        return b"unreadable"
    finally:
        os.close(fd)


def _write_if_changed(path: Path, text: str) -> bool:
    data = text.encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return True


@dataclass
class Workspace:
    name: str
    directory: Path
    module: rootmodule.RootModule
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The Terraform workspace to select (named after the task, as CTS does): needed when
    # the backend is shared between tasks. None: the default one (local state in the
    # workspace directory).
    terraform_workspace: str | None = None
    # Init with -reconfigure: the directory was initialised with another backend whose
    # state is empty or absent (see reconciler.runner.state).
    reconfigure: bool = False
    throwaway: bool = False
    placement: Placement | None = None
    # Values rendered from provider templates: scrubbed from Terraform's output, and
    # part of the apply digest only through an HMAC.
    secrets: tuple[str, ...] = field(default=(), repr=False)
    secret_digest: str = ""

    def redact(self, line: str) -> str:
        return scrub(line, self.secrets) if self.secrets else line

    def files(self) -> dict[str, str | None]:
        """Init-relevant files by name; None means the file must not exist."""
        m = self.module
        try:
            return {
                "main.tf": rootmodule.render_main_tf(m),
                "variables.tf": rootmodule.render_variables_tf(m),
                "variables.module.tf": rootmodule.render_variables_module_tf(m),
                "variables.auto.tfvars": rootmodule.render_variables_auto_tfvars(m),
                "providers.auto.tfvars": rootmodule.render_providers_auto_tfvars(m),
            }
        except ValueError as exc:  # a name Terraform could not read back
            raise WorkspaceError(f'task "{self.name}": {exc}') from None

    def digest(self, identity: str) -> str:
        h = hashlib.sha256(identity.encode())
        for name, text in sorted(self.files().items()):
            h.update(f"\0{name}\0{text}".encode())
        return h.hexdigest()

    def module_digest(self) -> str:
        """The content of a local module's files (a remote module is named by its source
        and version, already in main.tf): an edit of the module is a change to apply.

        A module's files may be hostile (a FIFO, a link to /dev/zero, a huge file), so
        only regular files are read, never through a symlink (a link counts by its
        target's name), a file above MODULE_FILE_CAP counts by its size and mtime, and at
        most MODULE_FILES files are looked at. It blocks: run it in a worker thread."""
        source = self.module.source
        if not is_local_module(source):
            return ""
        root = (self.directory / source).resolve()
        h = hashlib.sha256()
        seen = 0
        for dirpath, dirnames, filenames in os.walk(root):  # symlinked dirs not entered
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                seen += 1
                if seen > MODULE_FILES:
                    h.update(b"\0(more files)")
                    return h.hexdigest()
                path = Path(dirpath) / name
                h.update(f"\0{path.relative_to(root)}\0".encode())
                h.update(_file_fingerprint(path))
        return h.hexdigest()

    def write(self) -> None:
        private_dir(self.directory)
        for name, text in self.files().items():
            path = self.directory / name
            if text is None:
                if name in _OPTIONAL:
                    path.unlink(missing_ok=True)
            else:
                _write_if_changed(path, text)

    def write_inputs(self, inputs: ModuleInputs) -> str:
        """Render terraform.tfvars; returns its digest."""
        text = rootmodule.render_terraform_tfvars(self.module, inputs)
        private_dir(self.directory)
        _write_if_changed(self.directory / "terraform.tfvars", text)
        return hashlib.sha256(text.encode()).hexdigest()

    # --- init bookkeeping ------------------------------------------------------------------

    def is_initialized(self, identity: str) -> bool:
        try:
            return (self.directory / INIT_MARKER).read_text() == self.digest(identity)
        except OSError:
            return False

    def mark_initialized(self, identity: str) -> None:
        marker = self.directory / INIT_MARKER
        private_dir(marker.parent)
        _write_if_changed(marker, self.digest(identity))

    def forget_initialized(self) -> None:
        (self.directory / INIT_MARKER).unlink(missing_ok=True)

    def remove(self) -> None:
        if self.throwaway:
            shutil.rmtree(self.directory, ignore_errors=True)


class Workspaces:
    """Builds the workspace of a task from its definition and the daemon settings. The
    event loop owns it (and the placements it remembers)."""

    def __init__(
        self,
        working_dir: Path,
        driver: TerraformDriverSettings | None = None,
        providers: Sequence[TerraformProviderSettings] = (),
        *,
        policy: StatePolicy | None = None,
        kv: KVReader | None = None,
        templates: ProviderTemplates | None = None,
    ) -> None:
        """`policy`: where state lives when no backend is configured (default: the
        driver's backend, else local); `kv`: reads Consul KV, to find state CTS left;
        `templates`: renders the providers' templates (default: from the environment,
        Consul and Vault unavailable)."""
        self.working_dir = working_dir
        self.driver = driver or TerraformDriverSettings()
        self.providers = {p.id: p for p in providers}
        self.policy = policy or StatePolicy(configured=self.driver.backend)
        self.kv = kv
        self.templates = templates or ProviderTemplates(providers, kv=kv)
        # (task, workspace directory) -> where its state lives, decided once.
        self._placements: dict[tuple[str, Path], Placement] = {}

    async def placement(self, spec: TaskSpec, base_dir: Path | None) -> Placement:
        """Where the task's state lives (raises StateError when that cannot be decided
        safely); logged the first time, with its warning if it has one."""
        directory = self.directory_for(spec, base_dir or Path.cwd())
        key = (spec.name, directory)
        found = self._placements.get(key)
        if found is None:
            found = await place(self.policy, directory, spec.name, self.kv)
            self._placements[key] = found
            log.info("task %s: %s", spec.name, describe(found))
            if found.warning:
                log.warning("%s", found.warning)
        return found

    async def prepare(
        self, spec: TaskSpec, base_dir: Path | None, *, throwaway: bool = False
    ) -> Workspace:
        """The workspace of `spec` with its state placed and its providers' templates
        rendered (see `for_task`); raises StateError or TemplateError."""
        placement = await self.placement(spec, base_dir)
        rendered = {
            pid: await self.templates.render(pid)
            for pid in spec.providers or ()
            if self.templates.templated(pid)
        }
        return self.for_task(
            spec, base_dir, throwaway=throwaway, placement=placement, rendered=rendered
        )

    def directory_for(self, spec: TaskSpec, base_dir: Path | None) -> Path:
        if spec.working_dir:
            return Path(os.path.normpath(os.path.join(base_dir or Path.cwd(), spec.working_dir)))
        return self.working_dir / spec.name

    def for_task(
        self,
        spec: TaskSpec,
        base_dir: Path | None,
        *,
        throwaway: bool = False,
        placement: Placement | None = None,
        rendered: Mapping[str, RenderedProvider] | None = None,
    ) -> Workspace:
        """The workspace of `spec`, whose relative paths resolve against `base_dir` (the
        directory of its file; None: the current directory, as CTS does), its state where
        `placement` says (None: the configured backend, else local).

        A throwaway workspace (for planning a task that does not exist yet) gets a fresh
        directory of its own, removed after use."""
        base = base_dir or Path.cwd()
        if throwaway:
            directory = self.working_dir / SCRATCH / f"{spec.name}-{secrets.token_hex(4)}"
        else:
            directory = self.directory_for(spec, base)
        catalog_services, consul_kv = declared_inputs(spec)
        rendered = rendered or {}
        providers = [self._provider(pid, rendered.get(pid)) for pid in spec.providers or ()]
        if placement is None:
            backend = self.driver.backend or LOCAL_BACKEND
            placement = Placement(
                backend, spec.name if backend != LOCAL_BACKEND else None, "", "as configured"
            )
        # CTS: the backend's Consul variables, then the providers' task_env over them.
        env: dict[str, str] = dict(placement.env)
        for pid in spec.providers or ():
            done = rendered.get(pid)
            if done is not None:
                task_env = done.body.get("task_env")
                env.update(task_env if isinstance(task_env, dict) else {})
                continue
            known = self.providers.get(pid)
            if known is not None:
                env.update(known.task_env)
        backend = placement.backend
        module = rootmodule.RootModule(
            task=spec.name,
            description=spec.description or "",
            source=module_source(spec.module or "", base, directory),
            version=spec.version or "",
            variables=task_variables(spec, base),
            providers=providers,
            required_providers=self.driver.required_providers,
            backend=backend,
            catalog_services=catalog_services,
            consul_kv=consul_kv,
        )
        env.update(rootmodule.provider_environment(module))
        rendered_values = tuple(v for done in rendered.values() for v in done.values)
        digest = "".join(rendered[pid].digest() for pid in sorted(rendered))
        return Workspace(
            spec.name,
            directory,
            module,
            env,
            terraform_workspace=placement.workspace,
            reconfigure=placement.reconfigure,
            throwaway=throwaway,
            placement=placement,
            secrets=rendered_values,
            secret_digest=digest,
        )

    def _provider(
        self, pid: str, rendered: RenderedProvider | None = None
    ) -> rootmodule.ProviderConfig:
        name = pid.split(".", 1)[0]
        if rendered is not None:
            return rootmodule.ProviderConfig(name, dict(rendered.body), secret=True)
        known = self.providers.get(pid)
        # CTS writes an empty provider block for a name no terraform_provider defines.
        return rootmodule.ProviderConfig(name, dict(known.body) if known else {})
