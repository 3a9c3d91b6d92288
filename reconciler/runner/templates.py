"""Rendering the templates of `terraform_provider` blocks (reconciler.settings.templates)
when a task that uses the provider is initialised.

As CTS: `{{ env }}` from the daemon's environment, `{{ key }}` from Consul KV, `{{ with
secret }}` from Vault, the whole provider within CTS's 5 s. Unlike CTS, a rendered value is
never written to disk: a provider with a template is left out of providers.auto.tfvars and
handed to Terraform as the `TF_VAR_<provider>` variable of the process that runs the task
(its task_env likewise goes to the environment, as always); the provider variable is
declared sensitive, so Terraform shows it as (sensitive). Rendered values are kept in
memory only, per provider, until a reload.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler._core.errors import ReconcilerError
from reconciler.runner.state import KVReader, NoConsulError, StateError
from reconciler.settings.model import TerraformProviderSettings
from reconciler.settings.templates import (
    Env,
    Field,
    Key,
    Node,
    Text,
    WithSecret,
    has_template,
    parse,
)

TIMEOUT = 5.0  # CTS resolves provider templates at Init with a 5 s timeout
SENSITIVE = "(sensitive)"
# Values shorter than this are not scrubbed from output (they would match everywhere).
_MIN_SCRUB = 4
# Rendered values are compared through an HMAC with a key of this process: a changed
# secret changes a task's digest (its next run applies) without the digest revealing it.
_DIGEST_KEY = os.urandom(32)


class TemplateError(ReconcilerError):
    """A provider template that cannot be rendered now: the task's init error."""

    reason = "TemplateFailed"


class SecretReader(Protocol):
    """Vault: the `.Data` of the secret at `path`; raises an exception whose message says
    why (never holding a secret)."""

    async def read(self, path: str) -> Mapping[str, Any]: ...

    def forget_mounts(self) -> None:
        """Learn again which engine each mount is (a reload may follow a remount)."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class RenderedProvider:
    """A provider's body with its templates rendered."""

    body: Mapping[str, Any] = field(repr=False)
    secret: bool  # some value came from a template: it never goes to a file
    values: tuple[str, ...] = field(default=(), repr=False)  # what was rendered

    def digest(self) -> str:
        h = hmac.new(_DIGEST_KEY, digestmod=hashlib.sha256)
        for value in self.values:
            h.update(value.encode() + b"\0")
        return h.hexdigest()


def has_templates(provider: TerraformProviderSettings) -> bool:
    return any(has_template(s) for s in _strings(provider.body))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def scrub(text: str, values: Sequence[str]) -> str:
    """`text` with every rendered value in it replaced by (sensitive)."""
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= _MIN_SCRUB:
            text = text.replace(value, SENSITIVE)
    return text


class ProviderTemplates:
    """Renders providers' templates, each provider once until `clear` (a reload). The
    event loop owns it."""

    def __init__(
        self,
        providers: Sequence[TerraformProviderSettings],
        *,
        environ: Mapping[str, str] | None = None,
        kv: KVReader | None = None,
        vault: SecretReader | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.providers = {p.id: p for p in providers}
        self.environ = os.environ if environ is None else environ
        self.kv = kv
        self.vault = vault
        self.timeout = timeout
        self._rendered: dict[str, RenderedProvider] = {}

    def clear(self) -> None:
        self._rendered.clear()
        if self.vault is not None:
            self.vault.forget_mounts()

    async def aclose(self) -> None:
        if self.vault is not None:
            await self.vault.aclose()

    def templated(self, pid: str) -> bool:
        provider = self.providers.get(pid)
        return provider is not None and has_templates(provider)

    async def render(self, pid: str) -> RenderedProvider:
        """The provider `pid` rendered (raises TemplateError naming file:line)."""
        done = self._rendered.get(pid)
        if done is not None:
            return done
        provider = self.providers[pid]
        values: list[str] = []
        try:
            async with asyncio.timeout(self.timeout):
                body = {
                    key: await self._value(provider, key, value, values)
                    for key, value in provider.body.items()
                }
        except TimeoutError:
            raise TemplateError(
                f'{provider.location}: terraform_provider "{provider.name}": its templates '
                f"were not rendered within {self.timeout:.0f}s"
            ) from None
        rendered = RenderedProvider(body, secret=True, values=tuple(values))
        self._rendered[pid] = rendered
        return rendered

    async def _value(
        self, provider: TerraformProviderSettings, key: str, value: Any, out: list[str]
    ) -> Any:
        if isinstance(value, str):
            if not has_template(value):
                return value
            try:
                text = await self._render(parse(value))
            except TemplateError as exc:
                raise TemplateError(
                    f'{provider.where(key)}: terraform_provider "{provider.name}" "{key}": '
                    f"{exc.message}"
                ) from None
            except ValueError as exc:  # a syntax error the load did not see
                raise TemplateError(
                    f'{provider.where(key)}: terraform_provider "{provider.name}" "{key}": {exc}'
                ) from None
            out.append(text)
            return text
        if isinstance(value, dict):
            return {k: await self._value(provider, key, v, out) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._value(provider, key, v, out) for v in value]
        return value

    async def _render(self, nodes: Sequence[Node], secret: Mapping[str, Any] | None = None) -> str:
        parts: list[str] = []
        for node in nodes:
            if isinstance(node, Text):
                parts.append(node.text)
            elif isinstance(node, Env):
                parts.append(self.environ.get(node.name, ""))
            elif isinstance(node, Key):
                parts.append(await self._key(node.path))
            elif isinstance(node, WithSecret):
                parts.append(await self._render(node.body, await self._secret(node.path)))
            elif isinstance(node, Field):
                assert secret is not None  # the parser allows fields inside `with` only
                parts.append(_field(secret, node.path))
        return "".join(parts)

    async def _key(self, path: str) -> str:
        if self.kv is None:
            raise TemplateError(f'{{{{ key "{path}" }}}}: no Consul is configured')
        try:
            value = await self.kv.get(path.lstrip("/"))
        except NoConsulError as exc:
            raise TemplateError(f'{{{{ key "{path}" }}}}: Consul does not answer: {exc}') from None
        except StateError as exc:
            raise TemplateError(f'{{{{ key "{path}" }}}}: {exc.message}') from None
        if value is None:
            raise TemplateError(f'{{{{ key "{path}" }}}}: no such key in Consul KV')
        return value.decode("utf-8", errors="replace")

    async def _secret(self, path: str) -> Mapping[str, Any]:
        if self.vault is None:
            raise TemplateError(f'{{{{ with secret "{path}" }}}}: no vault block is configured')
        try:
            return await self.vault.read(path)
        except Exception as exc:  # the client's errors say why, never what the secret is
            raise TemplateError(f'{{{{ with secret "{path}" }}}}: {exc}') from None


def _field(data: Mapping[str, Any], path: Sequence[str]) -> str:
    value: Any = data
    for i, name in enumerate(path):
        if not isinstance(value, Mapping) or name not in value:
            shown = ".Data." + ".".join(path[: i + 1])
            raise TemplateError(f"the secret has no field {shown}")
        value = value[name]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"the secret's field .Data.{'.'.join(path)} is not a single value")
