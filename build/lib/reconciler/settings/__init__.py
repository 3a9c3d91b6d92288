"""Daemon configuration: CTS-compatible config files (HCL or JSON), merged and resolved once.

`load_settings(["/etc/cts/base.hcl", "/etc/cts/conf.d"])` reads the -config-file and
-config-dir arguments in order and returns a frozen `Settings`.
"""

from reconciler.settings.load import global_defaults, load_settings
from reconciler.settings.model import (
    TLS,
    BufferPeriod,
    ConfiguredTask,
    Consul,
    ConsulAuth,
    ConsulTLS,
    ConsulTransport,
    DefaultCheck,
    DirectorySource,
    GitAuthor,
    GitSource,
    Service,
    ServiceRegistration,
    Settings,
    Source,
    Syslog,
    TerraformDriver,
    TerraformProvider,
)

__all__ = [
    "TLS",
    "BufferPeriod",
    "ConfiguredTask",
    "Consul",
    "ConsulAuth",
    "ConsulTLS",
    "ConsulTransport",
    "DefaultCheck",
    "DirectorySource",
    "GitAuthor",
    "GitSource",
    "Service",
    "ServiceRegistration",
    "Settings",
    "Source",
    "Syslog",
    "TerraformDriver",
    "TerraformProvider",
    "global_defaults",
    "load_settings",
]
