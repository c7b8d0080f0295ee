"""Settings for sending: an SMTP server (submission), with or without a mailbox session."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from postroom.auth.base import AuthMode
from postroom.config.email_server import DEFAULT_PORTS, EmailServer, PlaintextWarning
from postroom.config.providers import Security
from postroom.errors import ConfigError
from postroom.validation import check_ca_file, check_choice, check_port, check_timeout, normalise_host

__all__ = ["SmtpServer"]


@dataclass(frozen=True, kw_only=True)
class SmtpServer:
    """An SMTP submission server. ``auth=None`` sends without logging in (a relay that trusts the network)."""

    host: str
    auth: AuthMode | None
    port: int | None = None
    security: Security = "starttls"
    verify_certificate: bool = True
    ca_file: Path | str | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", normalise_host("host", self.host))
        check_choice("security", self.security, Security)
        if self.port is None:
            object.__setattr__(self, "port", DEFAULT_PORTS[("smtp", self.security)])
        check_port("port", self.port)
        check_timeout("connect_timeout", self.connect_timeout)
        check_timeout("read_timeout", self.read_timeout)
        if self.ca_file is not None:
            object.__setattr__(self, "ca_file", check_ca_file(self.ca_file))
        if self.security == "none":
            warnings.warn(
                f"security='none': mail and any password to {self.host} cross the network unencrypted",
                PlaintextWarning,
                stacklevel=3,
            )

    @property
    def address(self) -> str:
        scheme = "smtps" if self.security == "ssl" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    @classmethod
    def for_session(cls, config: EmailServer) -> SmtpServer:
        """The SMTP server of a mailbox's settings (provider preset or smtp_* fields), with the same login."""
        endpoint = config.smtp
        if endpoint is None:
            raise ConfigError(
                "smtp_host",
                f"no SMTP server is known for {config.address}",
                hint="give smtp_host= (and smtp_port=/smtp_security=) when connecting, or a provider=",
            )
        return cls(
            host=endpoint.host,
            port=endpoint.port,
            security=endpoint.security,
            auth=config.auth,
            verify_certificate=config.verify_certificate,
            ca_file=config.ca_file,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
