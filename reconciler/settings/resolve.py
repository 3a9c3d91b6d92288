"""Merged partials -> Settings: defaults (including environment variables) and validation.

Every check records a problem and carries on with a usable value, so that one load reports
every mistake.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

from reconciler._core.errors import Location, Problem
from reconciler.settings.model import (
    BACKEND_TYPES,
    CONSUL_BLOCK,
    CONSUL_CATALOG,
    CONSUL_DEFAULT,
    CONSUL_ENVIRONMENT,
    LOG_FORMATS,
    LOG_LEVELS,
    SECOND,
    TERRAFORM_MAX,
    TERRAFORM_MIN,
    ApiTasksSettings,
    BufferPeriodSettings,
    ConfiguredTask,
    ConsulAuthSettings,
    ConsulSettings,
    ConsulTLSSettings,
    ConsulTransportSettings,
    DefaultCheckSettings,
    EtcdTLSSettings,
    HighAvailabilitySettings,
    ServiceRegistrationSettings,
    ServiceSettings,
    SourceSettings,
    SyslogSettings,
    TerraformDriverSettings,
    TerraformProviderSettings,
    TLSSettings,
)
from reconciler.settings.partial import Partial
from reconciler.settings.templates import strings_in
from reconciler.settings.tls import TLSFileError, missing_files, server_context
from reconciler.settings.vault import VaultConfigError, VaultSettings, vault_settings
from reconciler.taskfiles.tasks import task_where

_ENV_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\*?")
_SEMVER = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?")
_VAULT_SECRET = re.compile(r"\{\{-?\s*(?:with\s+)?secret\b")


class Checker:
    def __init__(self, problems: list[Problem], warnings: list[Problem]) -> None:
        self.problems = problems
        self.warnings = warnings

    def bad(self, message: str, where: tuple[str, ...], at: Location) -> None:
        self.problems.append(Problem(message, where, at))

    def warn(self, message: str, where: tuple[str, ...], at: Location) -> None:
        self.warnings.append(Problem(message, where, at))


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _env(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def log_level(top: Partial, c: Checker) -> str:
    level = str(top.get("log_level", "INFO")).upper()
    if level not in LOG_LEVELS:
        c.bad(
            f'invalid log_level "{top.get("log_level")}": expected one of ' + ", ".join(LOG_LEVELS),
            (),
            top.loc("log_level"),
        )
        return "INFO"
    return level


def log_format(top: Partial, c: Checker) -> str:
    fmt = top.get("log_format", LOG_FORMATS[0])
    if fmt not in LOG_FORMATS:
        c.bad(f'"log_format" must be "text" or "json", not "{fmt}"', (), top.loc("log_format"))
        return LOG_FORMATS[0]
    return str(fmt)


def buffer_period(p: Partial, c: Checker) -> BufferPeriodSettings:
    enabled, low, high = p.get("enabled"), p.get("min"), p.get("max")
    if enabled is False:
        return BufferPeriodSettings(False, 0, 0)
    if enabled is None and low is None and high is None:
        return BufferPeriodSettings()
    low = BufferPeriodSettings.min if low is None else low
    high = 4 * low if high is None else high
    if low < 0 or high < 0:
        c.bad("buffer_period: cannot be negative", (), p.loc("min" if low < 0 else "max"))
        return BufferPeriodSettings()
    if high < low:
        c.warn(
            "buffer_period: min is greater than max; max is raised to min (as CTS does)",
            (),
            p.loc("max"),
        )
    return BufferPeriodSettings(True, low, max(low, high))


def catalog_path(top: Partial, c: Checker, config_files: Sequence[str] = ()) -> Path | None:
    """`catalog "directory" { path }`: the embedded catalog, which stands in for Consul;
    without a block (and without a consul block), the `catalog` directory next to the first
    configuration file when it exists."""
    block = top.blocks.get("catalog")
    if block is None:
        if "consul" in top.blocks or not config_files:
            return None
        default = Path(config_files[0]).absolute().parent / "catalog"
        return default if default.is_dir() else None
    where = ('catalog "directory"',)
    if "consul" in top.blocks:
        c.bad(
            'a catalog "directory" block and a consul block cannot both be configured: '
            "tasks read either Consul or the embedded catalog",
            where,
            block.at,
        )
        return None
    path = block.get("path")
    if not path:
        c.bad('"path" is required', where, block.at)
        return None
    return Path(path)


def consul_from(top: Partial, catalog: Path | None, env: Mapping[str, str]) -> str:
    """Where the daemon's Consul comes from: a consul block; else the embedded catalog;
    else CTS's environment variable CONSUL_HTTP_ADDR; else CTS's default address."""
    if "consul" in top.blocks:
        return CONSUL_BLOCK
    if catalog is not None:
        return CONSUL_CATALOG
    if _env(env, "CONSUL_HTTP_ADDR"):
        return CONSUL_ENVIRONMENT
    return CONSUL_DEFAULT


def syslog(p: Partial) -> SyslogSettings:
    enabled = p.get("enabled")
    if enabled is None:
        enabled = bool(p.get("facility") or p.get("name"))
    return SyslogSettings(
        enabled,
        p.get("facility", SyslogSettings.facility).upper(),
        p.get("name", SyslogSettings.name),
    )


def api_tls(p: Partial, c: Checker) -> TLSSettings:
    cert, key = _path(p.get("cert")), _path(p.get("key"))
    ca_cert, ca_path = _path(p.get("ca_cert")), _path(p.get("ca_path"))
    verify_incoming = p.get("verify_incoming", False)
    enabled = p.get("enabled")
    if enabled is None:
        enabled = bool(cert or key or ca_cert or ca_path or verify_incoming)
    where = ("tls",)
    before = len(c.problems)
    if enabled and not (cert and key):
        c.bad(
            "key and cert are required if TLS is enabled on the CTS API",
            where,
            p.loc("enabled", "cert", "key"),
        )
    elif cert and not key:
        c.bad("key is required if cert is configured for TLS on the CTS API", where, p.loc("cert"))
    if verify_incoming and not (ca_cert or ca_path):
        c.bad(
            "either ca_cert or ca_path is required if verify_incoming is enabled on the CTS API",
            where,
            p.loc("verify_incoming"),
        )
    if verify_incoming and ca_cert and ca_path:
        c.warn(
            "ca_cert and ca_path are both configured, but only ca_cert will be used for "
            "TLS on the CTS API",
            where,
            p.loc("ca_path"),
        )
    if enabled and not verify_incoming and (ca_cert or ca_path):
        c.warn(
            "ca_cert and ca_path are used only with verify_incoming = true: clients are "
            "not asked for a certificate",
            where,
            p.loc("ca_cert", "ca_path"),
        )
    result = TLSSettings(enabled, cert, key, verify_incoming, ca_cert, ca_path)
    if not enabled or len(c.problems) != before:
        return result  # the files matter once the block itself is right
    for missing in missing_files(result):
        c.bad(missing.message, where, p.loc(missing.setting))
    if len(c.problems) == before:
        # Load the files now, so that a wrong key or a file that is not PEM is reported
        # with its line (and by `reconciler validate`), not when the server starts.
        try:
            server_context(result)
        except TLSFileError as exc:
            c.bad(exc.message, where, p.loc(exc.setting))
    return result


def consul(p: Partial, env: Mapping[str, str], c: Checker) -> ConsulSettings:
    address = p.get("address")
    if address is None:
        address = _env(env, "CONSUL_HTTP_ADDR") or ConsulSettings.address
    token = p.get("token")
    if token is None:
        token = _env(env, "CONSUL_TOKEN", "CONSUL_HTTP_TOKEN") or ""
    auth = p.block("auth")
    username, password = auth.get("username", ""), auth.get("password", "")
    transport = p.block("transport")
    d = ConsulTransportSettings()
    max_conns = transport.get("max_conns_per_host", d.max_conns_per_host)
    if max_conns < 0:
        c.bad(
            '"max_conns_per_host" cannot be negative (0: no cap)',
            ("consul", "transport"),
            transport.loc("max_conns_per_host"),
        )
        max_conns = d.max_conns_per_host
    return ConsulSettings(
        address=address,
        token=token,
        auth=ConsulAuthSettings(
            auth.get("enabled", bool(username or password)), username, password
        ),
        tls=_consul_tls(p.block("tls"), env),
        transport=ConsulTransportSettings(
            dial_keep_alive=transport.get("dial_keep_alive", d.dial_keep_alive),
            dial_timeout=transport.get("dial_timeout", d.dial_timeout),
            disable_keep_alives=transport.get("disable_keep_alives", d.disable_keep_alives),
            idle_conn_timeout=transport.get("idle_conn_timeout", d.idle_conn_timeout),
            max_idle_conns=transport.get("max_idle_conns", d.max_idle_conns),
            max_idle_conns_per_host=transport.get(
                "max_idle_conns_per_host", d.max_idle_conns_per_host
            ),
            tls_handshake_timeout=transport.get("tls_handshake_timeout", d.tls_handshake_timeout),
            max_conns_per_host=max_conns,
        ),
        kv_namespace=p.get("kv_namespace", ""),
        kv_path=p.get("kv_path", ConsulSettings.kv_path),
        service_registration=_service_registration(p.block("service_registration"), c),
    )


_GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")


def _consul_tls(p: Partial, env: Mapping[str, str]) -> ConsulTLSSettings:
    enabled = p.get("enabled")
    if enabled is None:
        # As CTS: any field set in the file enables TLS; of the environment, only
        # consul/api's CONSUL_HTTP_SSL (read as Go's ParseBool) does.
        enabled = any(p.get(k) for k in ("cert", "key", "ca_cert", "ca_path", "server_name"))
        enabled = enabled or p.has("verify") or _env(env, "CONSUL_HTTP_SSL") in _GO_TRUE
    verify = p.get("verify")
    if verify is None:
        verify = _env(env, "CONSUL_HTTP_SSL_VERIFY") not in _GO_FALSE

    def file(name: str, variable: str) -> Path | None:
        if p.has(name):
            return _path(p.get(name))
        value = _env(env, variable)
        return Path(value).absolute() if value else None

    return ConsulTLSSettings(
        enabled=enabled,
        verify=verify,
        cert=file("cert", "CONSUL_CLIENT_CERT"),
        key=file("key", "CONSUL_CLIENT_KEY"),
        ca_cert=file("ca_cert", "CONSUL_CACERT"),
        ca_path=file("ca_path", "CONSUL_CAPATH"),
        server_name=p.get("server_name")
        if p.has("server_name")
        else (_env(env, "CONSUL_TLS_SERVER_NAME") or ""),
    )


def _service_registration(p: Partial, c: Checker) -> ServiceRegistrationSettings:
    check = p.block("default_check")
    address = check.get("address", "")
    where = ("consul", "service_registration", "default_check")
    if address and not address.lower().startswith("http"):
        c.bad(
            "default check address must include scheme (http or https)", where, check.loc("address")
        )
    elif address:
        try:
            host = urlsplit(address).netloc
        except ValueError as exc:  # e.g. "Invalid IPv6 URL" for an unbalanced "["
            c.bad(
                f'error with address for default check: {exc}: "{address}"',
                where,
                check.loc("address"),
            )
        else:
            if not host:
                c.bad(
                    f'error with address for default check: no host in "{address}"',
                    where,
                    check.loc("address"),
                )
    d = ServiceRegistrationSettings()
    return ServiceRegistrationSettings(
        enabled=p.get("enabled", d.enabled),
        service_name=p.get("service_name", d.service_name),
        address=p.get("address", d.address),
        namespace=p.get("namespace", d.namespace),
        default_check=DefaultCheckSettings(check.get("enabled", True), address),
    )


APPLY_ON_START = ("changed", "always")


def driver(p: Partial, consul_settings: ConsulSettings, c: Checker) -> TerraformDriverSettings:
    where = ('driver "terraform"',)
    version = p.get("version") or None
    if version is not None:
        problem = terraform_version_problem(version)
        if problem:
            c.bad(problem, where, p.loc("version"))
    apply_on_start = p.get("apply_on_start", TerraformDriverSettings.apply_on_start)
    if apply_on_start not in APPLY_ON_START:
        c.bad(
            f'"apply_on_start" must be "changed" or "always", not "{apply_on_start}"',
            where,
            p.loc("apply_on_start"),
        )
        apply_on_start = TerraformDriverSettings.apply_on_start
    workers = p.get("workers", TerraformDriverSettings.workers)
    if workers < 1:
        c.bad('"workers" must be at least 1', where, p.loc("workers"))
        workers = 1
    pass_env = tuple(p.get("pass_env") or ())
    for pattern in pass_env:
        if not _ENV_PATTERN.fullmatch(pattern):
            c.bad(
                f'pass_env: "{pattern}" is not a variable name or a PREFIX* pattern',
                where,
                p.loc("pass_env"),
            )
    backend: dict[str, Any] = dict(p.get("backend") or {})
    if len(backend) > 1:
        c.bad(
            "only one Terraform backend can be configured, found: "
            + ", ".join(f'"{b}"' for b in sorted(backend)),
            where,
            p.loc("backend"),
        )
    if "consul" in backend:
        default = default_backend(consul_settings)
        backend["consul"] = {**default["consul"], **backend["consul"]}
    return TerraformDriverSettings(
        version=version,
        path=_path(p.get("path")),
        log=p.get("log", False),
        persist_log=p.get("persist_log", False),
        workers=workers,
        apply_on_start=apply_on_start,
        pass_env=pass_env,
        required_providers=p.get("required_providers") or {},
        backend=backend or None,
    )


def backend_type_problems(backend: Mapping[str, Any]) -> Iterator[str]:
    for name in backend:
        if name not in BACKEND_TYPES:
            yield f'unsupported Terraform backend by Sync "{name}"; expected one of: ' + (
                ", ".join(BACKEND_TYPES)
            )


def terraform_version_problem(version: str) -> str | None:
    m = _SEMVER.fullmatch(version)
    if m is None:
        return f"Malformed version: {version}"
    if m.group(3) is None:
        return f"provide the exact Terraform version to install: {version}"
    parts = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m.group(4) or not TERRAFORM_MIN <= parts <= TERRAFORM_MAX:
        low, high = (".".join(map(str, v)) for v in (TERRAFORM_MIN, TERRAFORM_MAX))
        return (
            "Terraform version is not supported by Consul Terraform Sync, try updating to "
            f"a different version (>= {low}, <= {high}): {version}"
        )
    return None


def default_backend(settings: ConsulSettings) -> dict[str, Any]:
    """CTS's default consul backend (state in Consul KV under <kv_path>/terraform, over TLS
    if Consul is), which a configured `backend "consul"` is merged over."""
    kv = settings.kv_path
    path = "consul-terraform-sync/terraform"
    if kv:
        path = (
            kv if kv.endswith("/terraform") else posixpath.normpath(posixpath.join(kv, "terraform"))
        )
    backend: dict[str, Any] = {"address": settings.address, "path": path, "gzip": True}
    tls = settings.tls
    if tls.enabled:
        backend["scheme"] = "https"
        for key, value in (
            ("ca_file", tls.ca_cert),
            ("cert_file", tls.cert),
            ("key_file", tls.key),
        ):
            if value is not None:
                backend[key] = str(value)
    return {"consul": backend}


# --- lists gathered from every file --------------------------------------------------------


def check_providers(providers: list[TerraformProviderSettings], c: Checker) -> None:
    seen: dict[str, TerraformProviderSettings] = {}
    for provider in providers:
        first = seen.setdefault(provider.id, provider)
        if first is not provider:
            c.bad(
                f"duplicate provider configuration: {provider.id} (first configured at "
                f"{first.location})",
                (),
                provider.location,
            )


def check_services(services: list[ServiceSettings], c: Checker) -> None:
    seen: dict[str, ServiceSettings] = {}
    for service in services:
        first = seen.setdefault(service.id, service)
        if first is not service:
            c.bad(
                f"unique service IDs are required: {service.id} (first used at {first.location})",
                ("service",),
                service.location,
            )


def check_tasks(
    tasks: list[ConfiguredTask], providers: list[TerraformProviderSettings], c: Checker
) -> list[ConfiguredTask]:
    """Report tasks defined twice across files and auto_commit providers shared by tasks;
    return the tasks with duplicates left out."""
    unique: dict[str, ConfiguredTask] = {}
    for task in tasks:
        name = task.spec.name
        first = unique.setdefault(name, task)
        if first is not task:
            c.bad(
                f"duplicate task name: {name} (defined in {first.file}:{first.line} and in "
                f"{task.file}:{task.line})",
                (task_where(name),),
                Location(task.file, task.line),
            )
    auto_commit = {p.id for p in providers if p.auto_commit}
    users: dict[str, ConfiguredTask] = {}
    for task in unique.values():
        for provider in task.spec.providers or ():
            if provider not in auto_commit:
                continue
            first = users.setdefault(provider, task)
            if first is not task:
                c.bad(
                    f"provider with autocommit ({provider}) cannot be used by more than one "
                    f"task: also used by task {first.spec.name}",
                    (task_where(task.spec.name),),
                    Location(task.file, task.line),
                )
    return list(unique.values())


def vault(block: Partial | None, env: Mapping[str, str], c: Checker) -> VaultSettings | None:
    """The `vault` block and VAULT_* variables as CTS resolves them; each key nothing acts
    on is warned about by name, at its line."""
    values = {k: f.value for k, f in block.fields.items()} if block else None
    at = block.at if block else Location("<environment>")
    try:
        settings, ignored = vault_settings(values, env)
    except VaultConfigError as err:
        c.bad(err.message, ("vault",), at)
        return None
    for key, why in ignored:
        top = key.split(".")[0]
        where = block.loc(top) if block is not None and block.has(top) else at
        c.warn(f"vault.{key} is not supported and has no effect: {why}", (), where)
    return settings


def check_vault_templates(
    providers: list[TerraformProviderSettings], vault: VaultSettings | None, c: Checker
) -> None:
    if vault is not None and vault.enabled:
        return
    for provider in providers:
        if any(_VAULT_SECRET.search(s) for s in strings_in(provider.body)):
            c.bad(
                "detected dynamic configuration using Vault: missing Vault configuration",
                (f'terraform_provider "{provider.name}"',),
                provider.location,
            )


def api_tasks(block: Partial | None) -> ApiTasksSettings:
    if block is None:
        return ApiTasksSettings()

    def listed(key: str) -> tuple[tuple[str, ...] | None, str]:
        if not block.has(key):
            return None, ""
        return tuple(block.get(key) or ()), str(block.loc(key))

    modules, modules_at = listed("modules")
    providers, providers_at = listed("providers")
    return ApiTasksSettings(modules, providers, modules_at, providers_at)


TOKEN_KEYS = ("api_token", "api_token_file", "api_token_env")


def api_token(top: Partial, env: Mapping[str, str], c: Checker) -> str:
    """The API token from `api_token`, the file `api_token_file` (one line; surrounding
    whitespace dropped) or the environment variable `api_token_env` names; one of them."""
    given = [k for k in TOKEN_KEYS if top.get(k) is not None]
    if len(given) > 1:
        c.bad(f"set only one of {', '.join(given)}", (), top.loc(given[1]))
        return ""
    if not given:
        return ""
    key = given[0]
    value = top.get(key)
    if key == "api_token_file":
        try:
            token = Path(value).read_text().strip()
        except OSError as exc:
            c.bad(f'api_token_file "{value}": {exc.strerror or exc}', (), top.loc(key))
            return ""
        where = f'the file "{value}"'
    elif key == "api_token_env":
        token = env.get(value, "").strip()
        where = f"the environment variable {value}"
        if value not in env:
            c.bad(f"api_token_env: {where} is not set", (), top.loc(key))
            return ""
    else:
        token, where = str(value), "api_token"
    if not token:
        c.bad(f"api_token: {where} is empty", (), top.loc(key))
        return ""
    if any(ch.isspace() for ch in token) or not token.isprintable():
        c.bad(f"api_token: {where} holds whitespace or control characters", (), top.loc(key))
        return ""
    return token


def high_availability(
    top: Partial,
    sources: list[SourceSettings],
    driver: TerraformDriverSettings,
    consul_in: str,
    c: Checker,
) -> HighAvailabilitySettings | None:
    """`high_availability` with `storage "etcd"`; None without the block."""
    block = top.blocks.get("high_availability")
    if block is None:
        return None
    where = ("high_availability",)
    cluster = block.block("cluster")
    storage = cluster.block("storage")
    name = cluster.get("name") or ""
    if not name:
        c.bad("a cluster name is required: cluster { name = ... }", where, cluster.loc("name"))
    if "storage" not in cluster.blocks:
        c.bad('a storage "etcd" block is required in the cluster block', where, cluster.loc())
    endpoints = storage.get("endpoints") or ()
    if "storage" in cluster.blocks and not endpoints:
        c.bad('storage "etcd" needs at least one endpoint', where, storage.loc("endpoints"))
    for url in endpoints:
        parts = _split_url(url)
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.path not in ("", "/")
        ):
            c.bad(
                f'storage "etcd" endpoint "{url}" must look like http://host:2379 or '
                "https://host:2379",
                where,
                storage.loc("endpoints"),
            )
    ttl = storage.get("session_ttl", HighAvailabilitySettings.session_ttl)
    if ttl < SECOND:
        c.bad('storage "etcd" session_ttl must be at least 1s', where, storage.loc("session_ttl"))
    tls = storage.block("tls")
    etcd_tls = EtcdTLSSettings(
        _path(tls.get("ca_cert")), _path(tls.get("cert")), _path(tls.get("key"))
    )
    if bool(etcd_tls.cert) != bool(etcd_tls.key):
        c.bad("etcd tls: cert and key go together", where, tls.loc("cert", "key"))
    if "tls" in storage.blocks and not any(u.startswith("https://") for u in endpoints):
        c.bad("etcd tls is configured but no endpoint uses https://", where, tls.loc())
    for key in ("ca_cert", "cert", "key"):
        path = getattr(etcd_tls, key)
        if path is not None and not path.is_file():
            c.bad(f'etcd tls: {key} "{path}" is not a file', where, tls.loc(key))
    address = block.block("instance").get("address") or ""
    instance = _split_url(address)
    if address and (instance is None or instance.scheme not in ("http", "https")):
        c.bad(
            f'instance address "{address}" must be a URL such as http://host:8558',
            where,
            block.block("instance").loc("address"),
        )
    if not sources:
        c.bad(
            'high availability needs a task source every member reads: a source "git" '
            "block (or one shared directory)",
            where,
            block.loc(),
        )
    elif not any(s.remote for s in sources):
        c.warn(
            "high availability with directory sources: every member must read the same "
            "directory (a shared file system), or the members serve different tasks",
            where,
            block.loc(),
        )
    local = driver.backend is None and consul_in not in (CONSUL_BLOCK, CONSUL_ENVIRONMENT)
    if local or (driver.backend is not None and "local" in driver.backend):
        c.warn(
            'high availability with the Terraform backend "local": each member keeps its '
            "own state, so a new leader applies every task from an empty state; configure "
            "a shared backend",
            where,
            block.loc(),
        )
    return HighAvailabilitySettings(
        cluster_name=name,
        endpoints=tuple(endpoints),
        session_ttl=ttl,
        parent_path=storage.get("parent_path") or HighAvailabilitySettings.parent_path,
        tls=etcd_tls,
        address=address,
        shard_runs=bool(block.get("shard_runs", False)),
        location=block.loc(),
    )


def _split_url(text: str) -> SplitResult | None:
    """`text` as a URL; None when it is none (an unclosed IPv6 bracket, a bad port)."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - only to see that the port parses
    except ValueError:
        return None
    return parts
