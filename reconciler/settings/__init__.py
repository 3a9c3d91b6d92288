"""Daemon configuration: CTS-compatible config files (HCL or JSON), merged and resolved once.

`load_settings(["/etc/cts/base.hcl", "/etc/cts/conf.d"])` reads the -config-file and
-config-dir arguments in order and returns a frozen `Settings`.
"""

from reconciler.settings.load import global_defaults, load_settings
from reconciler.settings.model import (
    BufferPeriodSettings,
    ConfiguredTask,
    ConsulAuthSettings,
    ConsulSettings,
    ConsulTLSSettings,
    ConsulTransportSettings,
    DefaultCheckSettings,
    DirectorySourceSettings,
    GitAuthorSettings,
    GitSourceSettings,
    ServiceRegistrationSettings,
    ServiceSettings,
    Settings,
    SourceSettings,
    SyslogSettings,
    TerraformDriverSettings,
    TerraformProviderSettings,
    TLSSettings,
)

__all__ = [
    "BufferPeriodSettings",
    "ConfiguredTask",
    "ConsulAuthSettings",
    "ConsulSettings",
    "ConsulTLSSettings",
    "ConsulTransportSettings",
    "DefaultCheckSettings",
    "DirectorySourceSettings",
    "GitAuthorSettings",
    "GitSourceSettings",
    "ServiceRegistrationSettings",
    "ServiceSettings",
    "Settings",
    "SourceSettings",
    "SyslogSettings",
    "TLSSettings",
    "TerraformDriverSettings",
    "TerraformProviderSettings",
    "global_defaults",
    "load_settings",
]
