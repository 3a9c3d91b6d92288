"""load_settings: files -> partials -> merge -> defaults and validation, all problems at once."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler._core.errors import ConfigError, Location, Problem
from reconciler._core.hosts import is_loopback
from reconciler.settings import resolve as r
from reconciler.settings.decode import DecodedFile, decode_file
from reconciler.settings.files import find_config_files, parse_config_file
from reconciler.settings.model import Settings
from reconciler.settings.partial import Partial, merge
from reconciler.settings.schema import TOP
from reconciler.settings.sources import duplicate_sources
from reconciler.settings.unsupported import unsupported_settings
from reconciler.taskfiles.model import GlobalDefaults


def load_settings(
    paths: Sequence[str | Path],
    *,
    environ: Mapping[str, str] | None = None,
    hostname: str | None = None,
) -> Settings:
    """Load the daemon configuration from -config-file / -config-dir arguments, in order.

    Raises ConfigError holding every problem found. `environ` (default os.environ) supplies
    CONSUL_HTTP_ADDR and friends; `hostname` the default id "cts-<hostname>".
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    warnings: list[Problem] = []
    files = find_config_files(paths, problems, warnings)
    if not files and not problems:
        raise ConfigError(Problem("no configuration files found"))
    decoded: list[DecodedFile] = []
    for file in files:
        body = parse_config_file(file, problems)
        if body is not None:
            decoded.append(decode_file(body, file, problems, warnings))
    settings = _resolve(decoded, env, hostname or socket.gethostname(), problems, warnings)
    if problems:
        raise ConfigError(_in_file_order(problems, [f.name for f in files]))
    return settings


def _resolve(
    decoded: list[DecodedFile],
    env: Mapping[str, str],
    hostname: str,
    problems: list[Problem],
    warnings: list[Problem],
) -> Settings:
    c = r.Checker(problems, warnings)
    top: Partial | None = None
    for d in decoded:
        top = merge(top, d.top, TOP)
    if top is None:
        top = Partial(Location("<defaults>"))

    port = top.get("port", Settings.port)
    if not 0 <= port <= 65535:
        c.bad("port must be between 1 and 65535 (0 picks a free port)", (), top.loc("port"))
    bind_address = top.get("bind_address", Settings.bind_address)
    if not bind_address.strip():
        c.bad('"bind_address" must not be empty', (), top.loc("bind_address"))
    working_dir = top.get("working_dir")
    if working_dir is None:
        working_dir = top.block("driver").get("working_dir")
    if working_dir == "":
        c.bad('"working_dir" must not be empty', (), top.loc("working_dir"))

    consul = r.consul(top.block("consul"), env, c)
    catalog_path = r.catalog_path(top, c, [d.file for d in decoded])
    consul_from = r.consul_from(top, catalog_path, env)
    vault = r.vault(top.blocks.get("vault"), env, c)
    providers = [p for d in decoded for p in d.providers]
    services = [s for d in decoded for s in d.services]
    sources = [s for d in decoded for s in d.sources]
    r.check_providers(providers, c)
    r.check_services(services, c)
    r.check_vault_templates(providers, vault, c)
    problems.extend(duplicate_sources(sources))
    tasks = r.check_tasks([t for d in decoded for t in d.tasks], providers, c)
    log_level = r.log_level(top, c)
    log_format = r.log_format(top, c)
    buffer_period = r.buffer_period(top.block("buffer_period"), c)
    tls = r.api_tls(top.block("tls"), c)
    api_token = r.api_token(top, env, c)
    if api_token and not tls.enabled and not is_loopback(bind_address):
        c.warn(
            f'api_token: the API listens on "{bind_address}" without TLS, so the token '
            "crosses the network in clear text; configure a tls block",
            (),
            top.loc("bind_address"),
        )
    driver = r.driver(top.block("driver"), consul, c)
    high_availability = r.high_availability(top, sources, driver, consul_from, c)
    api_tasks = r.api_tasks(top.blocks.get("api_tasks"))
    repeated = {"service": services[0].location} if services else {}
    warnings.extend(unsupported_settings(top, repeated))

    return Settings(
        log_level=log_level,
        log_format=log_format,
        port=port,
        bind_address=bind_address,
        api_token=api_token,
        metrics_token=top.get("metrics_token", Settings.metrics_token),
        working_dir=Path(working_dir) if working_dir else Path.cwd() / "sync-tasks",
        id=top.get("id") or f"cts-{hostname}",
        client_type=top.get("client_type", ""),
        buffer_period=buffer_period,
        syslog=r.syslog(top.block("syslog")),
        tls=tls,
        consul=consul,
        consul_from=consul_from,
        catalog_path=catalog_path,
        driver=driver,
        terraform_providers=tuple(providers),
        vault=vault,
        services=tuple(services),
        sources=tuple(sources),
        tasks=tuple(tasks),
        high_availability=high_availability,
        api_tasks=api_tasks,
        warnings=tuple(warnings),
        config_files=tuple(d.file for d in decoded),
    )


def _in_file_order(problems: list[Problem], files: list[str]) -> list[Problem]:
    rank = {name: i for i, name in enumerate(files)}

    def key(p: Problem) -> tuple[int, int]:
        if p.location is None:
            return (len(files), 0)
        return (rank.get(p.location.file, -1), p.location.line)

    return sorted(problems, key=key)


def global_defaults(settings: Settings) -> GlobalDefaults:
    """The daemon-level values a task inherits (its buffer period)."""
    bp = settings.buffer_period
    return GlobalDefaults(buffer_enabled=bp.enabled, buffer_min=bp.min, buffer_max=bp.max)
