"""The server's settings: where its database and key live, where it listens, the URL users reach it at.

Nothing needs configuring: by default the database is SQLite in postroom's data folder, the key is made
on first start beside it, and the service listens on loopback. Behind a TLS reverse proxy, set
``public_base_url`` (``POSTROOM_SERVER_URL``): every URL the service shows — the OAuth callback above
all — derives from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from postroom.errors import ConfigError
from postroom.paths import data_dir

__all__ = ["DEFAULT_PORT", "ServerSettings"]

DEFAULT_PORT = 8765
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

#: Environment variables → setting names (a CLI option wins over its variable).
ENVIRONMENT = {
    "POSTROOM_SERVER_DATABASE": "database_url",
    "POSTROOM_SERVER_URL": "public_base_url",
    "POSTROOM_SERVER_KEY_FILE": "key_file",
    "POSTROOM_SERVER_CA_FILE": "ca_file",
    "POSTROOM_SERVER_KEEPALIVE_SECONDS": "keepalive_interval",
}


@dataclass(frozen=True)
class ServerSettings:
    """Validated settings of one ``postroom server``."""

    #: A SQLAlchemy URL: SQLite (default, in the data folder) or ``postgresql://…``.
    database_url: str = ""
    #: The URL users and identity providers reach this service at (default: ``http://{host}:{port}``).
    public_base_url: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: The key that seals every secret at rest and signs OAuth ``state``; never in the database.
    key_file: Path = field(default_factory=Path)
    #: CA bundle for authorization servers and mail servers this service talks to (None: the system's).
    ca_file: str | None = None
    #: How often each process looks for refresh tokens idle for a week and refreshes them (Microsoft drops
    #: one unused for 90 days); several processes agree through the token's generation.
    keepalive_interval: float = 3600.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "keepalive_interval", float(self.keepalive_interval))
        home = data_dir() / "server"
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{home / 'server.sqlite3'}")
        if self.key_file == Path():
            object.__setattr__(self, "key_file", home / "server.key")
        if not self.public_base_url:
            shown = f"[{self.host}]" if ":" in self.host else self.host
            object.__setattr__(self, "public_base_url", f"http://{shown}:{self.port}")
        object.__setattr__(self, "public_base_url", _checked_base_url(self.public_base_url))
        if not 0 < self.port < 65536:
            raise ConfigError("port", f"{self.port} is not a TCP port", hint="give 1-65535")

    @classmethod
    def load(cls, **options: Any) -> ServerSettings:
        """Settings from the environment (``POSTROOM_SERVER_*``), overridden by the options given (not None)."""
        values: dict[str, Any] = {name: os.environ[var] for var, name in ENVIRONMENT.items() if os.environ.get(var)}
        values.update({name: value for name, value in options.items() if value is not None})
        if "key_file" in values:
            values["key_file"] = Path(values["key_file"])
        return cls(**values)

    def with_(self, **changes: Any) -> ServerSettings:
        return replace(self, **changes)

    @property
    def secure_cookies(self) -> bool:
        """Cookies only over HTTPS when users reach the service over HTTPS."""
        return self.public_base_url.startswith("https://")

    @property
    def callback_url(self) -> str:
        """The OAuth redirect URI to register with every identity provider."""
        return self.url("/oauth/callback")

    def url(self, path: str) -> str:
        return self.public_base_url + path


def _checked_base_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError("public_base_url", f"{url!r} is not an http(s) URL", hint="e.g. https://postroom.example.com")
    if parts.query or parts.fragment:
        raise ConfigError("public_base_url", "must not carry a query or a fragment", hint="give scheme, host and path")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigError(
            "public_base_url",
            f"plain http to {parts.hostname} would send passwords and tokens in the clear",
            hint="put the service behind a TLS reverse proxy and give its https:// address",
        )
    return url.strip().rstrip("/")
