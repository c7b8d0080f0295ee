"""Connect settings for an *Email server*: IMAP or POP3 (and SMTP for sending).

An :class:`EmailServer` is validated and normalised when it is built, so a bad
setting fails at once with the field's name and the fix, before any network
traffic. It is immutable; :meth:`EmailServer.clone` makes a changed copy.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from postroom.auth.base import AuthMode
from postroom.config.base import Setting
from postroom.config.providers import PROVIDERS, Endpoint, ProviderPreset, Security
from postroom.errors import ConfigError, PostroomWarning
from postroom.validation import check_ca_file, check_choice, check_port, check_timeout, normalise_host

__all__ = [
    "COMMON_SETTINGS",
    "DEFAULT_PORTS",
    "EMAIL_SERVER_SETTINGS",
    "AzureCloud",
    "EmailServer",
    "PlaintextWarning",
    "Protocol",
    "Security",
    "UnverifiedTLSWarning",
    "check_https_settings",
    "warn_unverified",
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


class PlaintextWarning(PostroomWarning):
    """``security="none"``: credentials and mail cross the network unencrypted."""


class UnverifiedTLSWarning(PostroomWarning):
    """``verify_certificate=False``: anyone on the path can impersonate the server."""


def warn_unverified(host: str | None) -> None:
    """Warn (pointing at the caller's config constructor) that ``host``'s certificate will not be checked."""
    warnings.warn(
        f"verify_certificate=False: the identity of {host} is not checked; "
        "prefer ca_file= with the server's CA certificate",
        UnverifiedTLSWarning,
        stacklevel=4,  # warn_unverified ← __post_init__ ← __init__ ← the caller
    )


def check_https_settings(config: Any) -> None:
    """What every config of a server reached over HTTPS (EWS, Graph) checks alike: the timeouts, the
    throttling wait, the CA file (made absolute)."""
    for name in ("connect_timeout", "read_timeout"):
        check_timeout(name, getattr(config, name))
    wait = config.max_throttle_wait
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        raise ConfigError(
            "max_throttle_wait", f"{wait!r} is not a number of seconds ≥ 0", hint="e.g. 300; 0 fails at once"
        )
    if config.ca_file is not None:
        object.__setattr__(config, "ca_file", check_ca_file(config.ca_file))


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
        check_choice("protocol", self.protocol, Protocol)
        check_choice("azure_cloud", self.azure_cloud, AzureCloud)
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
        check_choice("security", self.security, Security)
        if self.host is None:
            raise ConfigError("host", "is required", hint="give the server's host name, or a provider=")
        object.__setattr__(self, "host", normalise_host("host", self.host))
        take("port", DEFAULT_PORTS[(self.protocol, str(self.security))])
        check_port("port", self.port)
        if self.smtp_host is not None:
            object.__setattr__(self, "smtp_host", normalise_host("smtp_host", self.smtp_host))
            take("smtp_security", "starttls")
            check_choice("smtp_security", self.smtp_security, Security)
            take("smtp_port", DEFAULT_PORTS[("smtp", str(self.smtp_security))])
            check_port("smtp_port", self.smtp_port)
        for name in ("connect_timeout", "read_timeout"):
            check_timeout(name, getattr(self, name))
        if not isinstance(self.verify_certificate, bool):
            raise ConfigError("verify_certificate", "must be True or False")
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", check_ca_file(self.ca_file))
        if not hasattr(self.auth, "resolve") or not hasattr(self.auth, "kind"):
            raise ConfigError("auth", f"expected an auth mode such as Basic(...), got {type(self.auth).__name__}")
        if preset is not None and preset.refuses_passwords and "host" in filled and self.auth.kind in {"basic", "ntlm"}:
            raise ConfigError(
                "auth",
                f"{preset.name} refuses passwords on IMAP, POP3 and SMTP (Microsoft turned Basic authentication off)",
                hint="sign in with OAuth2: OAuth2PKCE (a user signs in once) or OAuth2ClientCredentials (app-only, "
                f"no user); CLI: --auth oauth2-pkce or --auth oauth2-client-credentials; set-up: {preset.guide}",
            )
        bind = getattr(self.auth, "for_server", None)
        if bind is not None:  # OAuth2 modes check (and take) the server's provider and Azure cloud
            object.__setattr__(self, "auth", bind(self.provider, self.azure_cloud))
        object.__setattr__(self, "preset_fields", frozenset(filled))
        if self.security == "none":
            warnings.warn(
                f"security='none': the password and all mail to {self.host} cross the network "
                "unencrypted; use 'ssl' or 'starttls' unless this is a closed test network",
                PlaintextWarning,
                stacklevel=3,
            )
        if not self.verify_certificate:
            warn_unverified(self.host)

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

    def given(self) -> dict[str, Any]:
        """The settings as given: those a provider preset filled are left to fill again."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        for name in self.preset_fields:
            given[name] = None
        given.pop("preset_fields", None)
        return given

    def clone(self, **changes: Any) -> EmailServer:
        """A copy with ``changes`` applied and validated again."""
        return EmailServer(**{**self.given(), **changes})


def _offered(preset: ProviderPreset) -> str:
    offered = [p for p in ("imap", "pop3") if preset.endpoint(p) is not None]
    return f"use protocol={' or '.join(repr(p) for p in offered)}"


#: Settings every server reached over TLS has.
COMMON_SETTINGS = (
    Setting("ca_file", "PEM file of the server's CA.", type=Path),
    Setting(
        "verify_certificate",
        "Do not verify the certificate (test servers only; warns).",
        type=bool,
        option="--no-verify",
        flag_value=False,
    ),
    Setting("connect_timeout", "Seconds (default 15).", type=float),
    Setting("read_timeout", "Seconds (default 60; EWS 120).", type=float),
)

#: What ``postroom connect --protocol imap|pop3`` offers.
EMAIL_SERVER_SETTINGS = (
    Setting("host", "Server host name (filled by --provider when left out)."),
    Setting("port", "Port (default: from protocol and security).", type=int),
    Setting("security", "Implicit TLS, STARTTLS, or none.", choices=("ssl", "starttls", "none")),
    Setting("provider", "Fill host/port/security.", choices=tuple(sorted(PROVIDERS))),
    Setting("azure_cloud", "Microsoft 365 cloud (default global).", choices=("global", "gcc-high")),
    *COMMON_SETTINGS,
    Setting("smtp_host", "SMTP host for sending (default: from --provider)."),
    Setting("smtp_port", "SMTP port.", type=int),
    Setting("smtp_security", "SMTP: implicit TLS, STARTTLS, or none.", choices=("ssl", "starttls", "none")),
)
