"""Connect settings for an *Email server*: IMAP or POP3 (and SMTP for sending).

An :class:`EmailServer` is validated and normalised when it is built, so a bad
setting fails at once with the field's name and the fix, before any network
traffic. It is immutable; :meth:`EmailServer.clone` makes a changed copy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from postroom.auth.base import AuthMode
from postroom.config.providers import PROVIDERS, Endpoint, ProviderPreset, Security
from postroom.errors import ConfigError, PostroomWarning

__all__ = [
    "DEFAULT_PORTS",
    "AzureCloud",
    "EmailServer",
    "PlaintextWarning",
    "Protocol",
    "Security",
    "UnverifiedTLSWarning",
]

Protocol = Literal["imap", "pop3"]
AzureCloud = Literal["global", "gcc-high"]

#: (protocol, security) → port, per RFC 8314 and the IANA registry.
DEFAULT_PORTS: dict[tuple[str, str], int] = {
    ("imap", "ssl"): 993,
    ("imap", "starttls"): 143,
    ("imap", "none"): 143,
    ("pop3", "ssl"): 995,
    ("pop3", "starttls"): 110,
    ("pop3", "none"): 110,
    ("smtp", "ssl"): 465,
    ("smtp", "starttls"): 587,
    ("smtp", "none"): 25,
}

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class PlaintextWarning(PostroomWarning):
    """``security="none"``: credentials and mail cross the network unencrypted."""


class UnverifiedTLSWarning(PostroomWarning):
    """``verify_certificate=False``: anyone on the path can impersonate the server."""


@dataclass(frozen=True, kw_only=True)
class EmailServer:
    """An IMAP or POP3 server (with SMTP for sending).

    ``provider`` fills host, port and security from :data:`~postroom.config.providers.PROVIDERS`;
    any field given explicitly wins. Without a provider, ``host`` is required and
    security defaults to implicit TLS (``"ssl"``).
    """

    auth: AuthMode
    protocol: Protocol = "imap"
    host: str | None = None
    port: int | None = None
    security: Security | None = None
    provider: str | None = None
    azure_cloud: AzureCloud = "global"
    verify_certificate: bool = True
    ca_file: Path | str | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 60.0
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_security: Security | None = None
    #: Keys that were filled from the provider preset rather than given (for reports).
    preset_fields: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_choice("protocol", self.protocol, Protocol)
        _check_choice("azure_cloud", self.azure_cloud, AzureCloud)
        preset = self._preset()
        filled: set[str] = set()

        def take(name: str, value: object) -> None:
            if getattr(self, name) is None and value is not None:
                object.__setattr__(self, name, value)
                filled.add(name)

        if preset is not None:
            endpoint = preset.endpoint(self.protocol)
            if endpoint is None and self.host is None:
                raise ConfigError(
                    "protocol",
                    f"{preset.name} does not offer {self.protocol.upper()}",
                    hint=_offered(preset),
                )
            if endpoint is not None:
                take("host", endpoint.host)
                if self.security in (None, endpoint.security):
                    take("port", endpoint.port)
                take("security", endpoint.security)
            if preset.smtp is not None:
                take("smtp_host", preset.smtp.host)
                if self.smtp_security in (None, preset.smtp.security):
                    take("smtp_port", preset.smtp.port)
                take("smtp_security", preset.smtp.security)
        take("security", "ssl")
        _check_choice("security", self.security, Security)
        if self.host is None:
            raise ConfigError("host", "is required", hint="give the server's host name, or a provider=")
        object.__setattr__(self, "host", _normalise_host("host", self.host))
        take("port", DEFAULT_PORTS[(self.protocol, str(self.security))])
        _check_port("port", self.port)
        if self.smtp_host is not None:
            object.__setattr__(self, "smtp_host", _normalise_host("smtp_host", self.smtp_host))
            take("smtp_security", "starttls")
            _check_choice("smtp_security", self.smtp_security, Security)
            take("smtp_port", DEFAULT_PORTS[("smtp", str(self.smtp_security))])
            _check_port("smtp_port", self.smtp_port)
        for name in ("connect_timeout", "read_timeout"):
            _check_timeout(name, getattr(self, name))
        if not isinstance(self.verify_certificate, bool):
            raise ConfigError("verify_certificate", "must be True or False")
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", _check_ca_file(self.ca_file))
        if not hasattr(self.auth, "resolve") or not hasattr(self.auth, "kind"):
            raise ConfigError("auth", f"expected an auth mode such as Basic(...), got {type(self.auth).__name__}")
        object.__setattr__(self, "preset_fields", frozenset(filled))
        if self.security == "none":
            warnings.warn(
                f"security='none': the password and all mail to {self.host} cross the network "
                "unencrypted; use 'ssl' or 'starttls' unless this is a closed test network",
                PlaintextWarning,
                stacklevel=3,
            )
        if not self.verify_certificate:
            warnings.warn(
                f"verify_certificate=False: the identity of {self.host} is not checked; "
                "prefer ca_file= with the server's CA certificate",
                UnverifiedTLSWarning,
                stacklevel=3,
            )

    def _preset(self) -> ProviderPreset | None:
        if self.provider is None:
            return None
        key = str(self.provider).strip().lower()
        if key == "microsoft365" and self.azure_cloud == "gcc-high":
            key = "microsoft365-gcc-high"
        preset = PROVIDERS.get(key)
        if preset is None:
            raise ConfigError(
                "provider",
                f"unknown provider {self.provider!r}",
                hint=f"choose one of {', '.join(sorted(PROVIDERS))}, or leave it out and give host=",
            )
        return preset

    @property
    def address(self) -> str:
        """``imap://host:port`` style label for messages (no credentials)."""
        scheme = {"imap": {"ssl": "imaps"}, "pop3": {"ssl": "pop3s"}}[self.protocol].get(
            str(self.security), self.protocol
        )
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def smtp(self) -> Endpoint | None:
        """The SMTP endpoint for sending, when known."""
        if self.smtp_host is None or self.smtp_port is None or self.smtp_security is None:
            return None
        return Endpoint(self.smtp_host, self.smtp_port, self.smtp_security)

    def clone(self, **changes: Any) -> EmailServer:
        """A copy with ``changes`` applied and validated again."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for name in self.preset_fields:  # let a new provider/protocol fill these afresh
            given[name] = None
        given.pop("preset_fields", None)
        given.update(changes)
        return EmailServer(**given)


def _offered(preset: ProviderPreset) -> str:
    offered = [p for p in ("imap", "pop3") if preset.endpoint(p) is not None]
    return f"use protocol={' or '.join(repr(p) for p in offered)}"


def _check_choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(
            name, f"{value!r} is not supported", hint=f"choose one of {', '.join(repr(a) for a in allowed)}"
        )


def _check_port(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(name, f"{value!r} is not a TCP port", hint="give a whole number from 1 to 65535")


def _check_timeout(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(name, f"{value!r} is not a usable timeout", hint="give seconds, greater than 0")


def _normalise_host(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(name, f"expected a host name, got {type(value).__name__}")
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(name, "contains a line break or NUL character", hint="give the host name only")
    host = value.strip()
    if not host:
        raise ConfigError(name, "is empty", hint="give the server's host name, e.g. imap.example.com")
    if "://" in host:
        raise ConfigError(
            name,
            f"{value!r} is a URL",
            hint="give the host name only (e.g. imap.example.com); set port= apart",
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host.count(":") == 1 and host.rsplit(":", 1)[1].isdigit():
        raise ConfigError(name, f"{value!r} includes a port", hint="give the host name alone and set port= apart")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise ConfigError(name, f"{value!r} is not a valid host name") from None
    if not ascii_host or not all(_HOST_LABEL.match(label) for label in ascii_host.split(".")):
        raise ConfigError(
            name,
            f"{value!r} is not a valid host name",
            hint="letters, digits, '-' and '.' only, e.g. mail.example.com",
        )
    return ascii_host


def _check_ca_file(value: object) -> Path:
    if not isinstance(value, str | Path) or any(ch in str(value) for ch in "\r\n\0"):
        raise ConfigError("ca_file", f"{value!r} is not a file path")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError("ca_file", f"{path} does not exist", hint="give the PEM file of the server's CA")
    return path
