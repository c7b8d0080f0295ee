"""Validated, immutable connection settings and provider presets."""

from postroom.config.base import ServerConfig, Setting
from postroom.config.email_server import (
    DEFAULT_PORTS,
    AzureCloud,
    EmailServer,
    PlaintextWarning,
    Protocol,
    Security,
    UnverifiedTLSWarning,
)
from postroom.config.ews import Ews, EwsRetirementWarning
from postroom.config.outlook import Outlook
from postroom.config.providers import PROVIDERS, Endpoint, ProviderPreset

__all__ = [
    "DEFAULT_PORTS",
    "PROVIDERS",
    "AzureCloud",
    "EmailServer",
    "Endpoint",
    "Ews",
    "EwsRetirementWarning",
    "Outlook",
    "PlaintextWarning",
    "Protocol",
    "ProviderPreset",
    "Security",
    "ServerConfig",
    "Setting",
    "UnverifiedTLSWarning",
]
