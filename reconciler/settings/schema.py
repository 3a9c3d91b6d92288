"""Which keys each daemon configuration block has, and their kinds.

One declaration drives three things: decoding a file into a partial (only the fields it
set), merging partials of several files field by field, and the JSON-syntax schema
(`json_schema`). The keys of the `source` blocks are declared with their readers, in
reconciler.settings.sources.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from reconciler.taskfiles.jsonsyntax import Schema


class Kind(Enum):
    STRING = "a string"
    BOOL = "a bool"
    INT = "a whole number"
    DURATION = "a duration"
    PATH = "a path"  # resolved against the directory of the file that set it
    MAP = "an object"  # merged key by key across files
    STRING_MAP = "a map of strings"
    BACKEND = "a backend"  # {type: {...}}: merged per type, then per field of that type
    RETRY = 'a whole number or "background"'
    STRINGS = "a list of strings"


@dataclass(frozen=True)
class BlockSpec:
    fields: dict[str, Kind] = field(default_factory=dict)
    blocks: dict[str, BlockSpec] = field(default_factory=dict)
    # Labelled single blocks (driver "terraform"): the accepted label.
    label: str | None = None
    # Any key is accepted and kept as a plain value (vault).
    free_form: bool = False
    # Hints for unknown keys, and for unsupported labels of a labelled block.
    hints: dict[str, str] = field(default_factory=dict)
    label_hints: dict[str, str] = field(default_factory=dict)


S, B, N, D, P = Kind.STRING, Kind.BOOL, Kind.INT, Kind.DURATION, Kind.PATH

ENTERPRISE = "Upgrade to Consul Enterprise to enable CTS Enterprise features."

BUFFER_PERIOD = BlockSpec({"enabled": B, "min": D, "max": D})
SYSLOG = BlockSpec({"enabled": B, "facility": S, "name": S})
TLS = BlockSpec(
    {"enabled": B, "cert": P, "key": P, "verify_incoming": B, "ca_cert": P, "ca_path": P}
)
CONSUL = BlockSpec(
    {"address": S, "token": S, "kv_namespace": S, "kv_path": S},
    {
        "auth": BlockSpec({"enabled": B, "username": S, "password": S}),
        "tls": BlockSpec(
            {
                "enabled": B,
                "verify": B,
                "cert": P,
                "key": P,
                "ca_cert": P,
                "ca_path": P,
                "server_name": S,
            }
        ),
        "transport": BlockSpec(
            {
                "dial_keep_alive": D,
                "dial_timeout": D,
                "disable_keep_alives": B,
                "idle_conn_timeout": D,
                "max_idle_conns": N,
                "max_idle_conns_per_host": N,
                "tls_handshake_timeout": D,
                "max_conns_per_host": N,
            }
        ),
        "service_registration": BlockSpec(
            {"enabled": B, "service_name": S, "address": S, "namespace": S},
            {"default_check": BlockSpec({"enabled": B, "address": S})},
        ),
    },
)
DRIVER = BlockSpec(
    {
        "version": S,
        "path": P,
        "log": B,
        "persist_log": B,
        "workers": N,
        "apply_on_start": S,
        "pass_env": Kind.STRINGS,
        "working_dir": P,
        "required_providers": Kind.MAP,
        "backend": Kind.BACKEND,
    },
    label="terraform",
    label_hints={
        "terraform-cloud": "Terraform Cloud is a Consul-Terraform-Sync (CTS) Enterprise "
        f"feature. {ENTERPRISE}",
    },
)
_CONSUL_STORAGE = (
    "high availability on Consul sessions (CTS Enterprise) is not implemented: configure "
    'storage "etcd" { endpoints = [...] }'
)
HIGH_AVAILABILITY = BlockSpec(
    {"shard_runs": B},
    {
        "cluster": BlockSpec(
            {"name": S},
            {
                "storage": BlockSpec(
                    {"endpoints": Kind.STRINGS, "session_ttl": D, "parent_path": S},
                    {"tls": BlockSpec({"ca_cert": P, "cert": P, "key": P})},
                    label="etcd",
                    label_hints={"default": _CONSUL_STORAGE, "consul": _CONSUL_STORAGE},
                )
            },
        ),
        "instance": BlockSpec({"address": S}),
    },
)
VAULT = BlockSpec(free_form=True)
CATALOG = BlockSpec({"path": P}, label="directory")

TOP = BlockSpec(
    {
        "log_level": S,
        "log_format": S,  # not in CTS: "text" or "json"
        "port": N,
        "bind_address": S,
        "working_dir": P,
        "id": S,
        "client_type": S,
        # Not in CTS: the API's bearer token, from one of three places.
        "api_token": S,
        "api_token_file": P,
        "api_token_env": S,
        "metrics_token": B,  # false: GET /metrics is served without the token
    },
    {
        "buffer_period": BUFFER_PERIOD,
        "syslog": SYSLOG,
        "tls": TLS,
        "consul": CONSUL,
        "driver": DRIVER,
        "vault": VAULT,
        "catalog": CATALOG,
        "high_availability": HIGH_AVAILABILITY,
        # Not in CTS: what tasks created through the API may use.
        "api_tasks": BlockSpec({"modules": Kind.STRINGS, "providers": Kind.STRINGS}),
    },
    hints={
        "provider": "'provider' is an invalid key for Consul-Terraform-Sync (CTS) "
        "configuration, try 'terraform_provider'. The terraform_provider configuration "
        "blocks are similar to provider blocks in Terraform but have additional features "
        "supported only by CTS.",
        "license": "'license' is a Consul-Terraform-Sync (CTS) Enterprise configuration.",
        "license_path": "'license_path' is a Consul-Terraform-Sync (CTS) Enterprise configuration.",
    },
)

# Repeatable blocks: decoded whole in each file, concatenated across files.
SERVICE = BlockSpec(
    {
        "name": S,
        "id": S,
        "description": S,
        "datacenter": S,
        "namespace": S,
        "filter": S,
        "cts_user_defined_meta": Kind.STRING_MAP,
    },
    hints={"tag": 'removed in CTS 0.4: use "filter" with Service.Tags'},
)


def json_schema(spec: BlockSpec) -> Schema:
    """The nested blocks of `spec` for the JSON syntax, with their number of labels."""
    return {name: (1 if sub.label else 0, json_schema(sub)) for name, sub in spec.blocks.items()}
