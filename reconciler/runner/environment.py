"""The environment Terraform runs with: an allow-list, never the daemon's whole
environment. A module can read its process's environment (`/proc/self/environ`, an
external data source, a local-exec), so whatever the daemon holds in its own (the API
token, git and etcd credentials, a Consul token the task's backend does not use) must not
be there.

What a Terraform process gets from the daemon's environment:
- what any program needs: PATH, HOME, USER, LOGNAME, TMPDIR, TZ, the locale (LANG,
  LANGUAGE, LC_*), the proxy variables (HTTP(S)_PROXY, NO_PROXY, ALL_PROXY, either case),
  SSL_CERT_FILE / SSL_CERT_DIR, and Python's own (the bundled Terraform runs in Python);
- Terraform's own: TF_* (TF_LOG, TF_CLI_CONFIG_FILE, TF_PLUGIN_CACHE_DIR, TF_VAR_*...) and
  CHECKPOINT_DISABLE;
- what the task's backend reads from the environment (AWS_* for s3, CONSUL_HTTP_* for
  consul, ...), for that backend only;
- the names and `PREFIX*` patterns of `driver "terraform" { pass_env = [...] }`.
Then the task's providers' `task_env` and the backend variables the daemon sets, which
win over all of the above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ALWAYS = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "TZ",
        "LANG",
        "LANGUAGE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CHECKPOINT_DISABLE",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    }
)
ALWAYS_PREFIXES = ("TF_", "LC_")

# What each backend type reads from the environment (Terraform's backend documentation).
BACKEND_PREFIXES: Mapping[str, tuple[str, ...]] = {
    "consul": ("CONSUL_HTTP_", "CONSUL_CACERT", "CONSUL_CAPATH", "CONSUL_CLIENT_"),
    "s3": ("AWS_",),
    "gcs": ("GOOGLE_", "CLOUDSDK_"),
    "azurerm": ("ARM_", "AZURE_"),
    "kubernetes": ("KUBE_",),
    "oss": ("ALICLOUD_",),
    "cos": ("TENCENTCLOUD_",),
    "pg": ("PG",),
    "http": (),  # TF_HTTP_* are TF_*
    "local": (),
}


def passed(name: str, patterns: Iterable[str]) -> bool:
    """`name` is one of the names, or starts with a `PREFIX*` pattern's prefix."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if name.startswith(pattern[:-1]):
                return True
        elif name == pattern:
            return True
    return False


def terraform_environment(
    base: Mapping[str, str],
    *,
    backend: str | None = None,
    pass_env: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The allowed part of `base` (the daemon's environment) for a Terraform process
    whose state uses `backend` (a type: "consul", "s3"; None: local), then `extra`."""
    patterns = tuple(pass_env)
    prefixes = ALWAYS_PREFIXES + BACKEND_PREFIXES.get(backend or "local", ())
    env = {
        name: value
        for name, value in base.items()
        if name in ALWAYS or name.startswith(prefixes) or passed(name, patterns)
    }
    env.update(extra or {})
    return env
