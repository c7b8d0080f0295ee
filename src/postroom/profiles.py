"""Named connection profiles: connection settings saved for later commands.

A profile holds settings and secret *references* only (``vault:``, ``var:``,
``env:``), never a secret in clear. It is a JSON file in postroom's home folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from postroom.auth import auth_from_profile
from postroom.config import EmailServer, Ews, ServerConfig
from postroom.errors import SessionNotFoundError
from postroom.paths import home_dir, write_private_file

__all__ = ["ProfileStore"]

_SETTINGS = (
    "protocol",
    "host",
    "port",
    "security",
    "provider",
    "azure_cloud",
    "verify_certificate",
    "ca_file",
    "connect_timeout",
    "read_timeout",
    "smtp_host",
    "smtp_port",
    "smtp_security",
)
_EWS_SETTINGS = (
    "url",
    "host",
    "provider",
    "azure_cloud",
    "version",
    "domain",
    "mailbox",
    "access_type",
    "verify_certificate",
    "ca_file",
    "connect_timeout",
    "read_timeout",
    "max_throttle_wait",
)


class ProfileStore:
    """Profiles in ``<postroom home>/profiles.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home_dir() / "profiles.json"

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data: dict[str, dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))
        return data

    def names(self) -> list[str]:
        return sorted(self._read())

    def save(self, name: str, config: ServerConfig) -> dict[str, Any]:
        """Store ``config`` as ``name``. Its secrets must be references, not insecure strings."""
        auth_record = config.auth.to_profile()
        if isinstance(config, Ews):
            settings = {key: getattr(config, key) for key in _EWS_SETTINGS if getattr(config, key) is not None}
            settings["protocol"] = "ews"
            if config.host is not None or config.provider is not None:
                settings.pop("url")  # derived again from host or provider
        else:
            settings = {key: getattr(config, key) for key in _SETTINGS if key not in config.preset_fields}
        if settings.get("ca_file") is not None:
            settings["ca_file"] = str(Path(settings["ca_file"]).resolve())
        record = {"settings": settings, "auth": auth_record}
        profiles = self._read()
        profiles[name] = record
        write_private_file(self.path, json.dumps(profiles, indent=2, sort_keys=True).encode("utf-8"))
        return record

    def raw(self, name: str) -> dict[str, Any]:
        profiles = self._read()
        if name not in profiles:
            known = ", ".join(repr(n) for n in sorted(profiles)) or "none"
            raise SessionNotFoundError(
                f"no connection profile named {name!r} (profiles: {known})",
                hint=f"create it with `postroom connect {name} --host ... --username ... --password ...`",
            )
        return profiles[name]

    def load(self, name: str) -> ServerConfig:
        record = self.raw(name)
        settings = dict(record["settings"])
        if settings.get("protocol") == "ews":
            settings.pop("protocol")
            return Ews(auth=auth_from_profile(record["auth"]), **settings)
        return EmailServer(auth=auth_from_profile(record["auth"]), **settings)

    def delete(self, name: str) -> None:
        profiles = self._read()
        self.raw(name)
        del profiles[name]
        write_private_file(self.path, json.dumps(profiles, indent=2, sort_keys=True).encode("utf-8"))
