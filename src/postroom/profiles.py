"""Named connection profiles: connection settings saved for later commands.

A profile holds settings and secret *references* only (``vault:``, ``var:``,
``env:``), never a secret in clear. It is a JSON file in postroom's home folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from postroom.auth import auth_from_profile
from postroom.config.base import ServerConfig
from postroom.errors import ConfigError, SessionNotFoundError
from postroom.paths import home_dir, locked, write_private_file
from postroom.transports.registry import backend, backend_for

__all__ = ["ProfileStore"]


class ProfileStore:
    """Profiles in ``<postroom home>/profiles.json``."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home_dir() / "profiles.json"

    def _read(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        try:
            data: dict[str, dict[str, Any]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise ConfigError(
                "profiles",
                f"{self.path} is not a readable profiles file ({type(error).__name__})",
                hint="it was left as it is: fix it by hand, or move it away to start afresh",
            ) from None
        return data

    def names(self) -> list[str]:
        return sorted(self._read())

    def save(self, name: str, config: ServerConfig) -> dict[str, Any]:
        """Store ``config`` as ``name``. Its secrets must be references, not insecure strings."""
        auth_record = config.auth.to_profile()
        settings = backend_for(config).to_profile(config)
        record = {"settings": settings, "auth": auth_record}
        with locked(self.path):  # read, change, write: no other thread or process in between
            profiles = self._read()
            profiles[name] = record
            self._write(profiles)
        return record

    def _write(self, profiles: dict[str, dict[str, Any]]) -> None:
        write_private_file(self.path, json.dumps(profiles, indent=2, sort_keys=True).encode("utf-8"))

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
        entry = backend(settings.get("protocol", "imap"))
        return entry.from_profile(settings, auth_from_profile(record["auth"]))

    def delete(self, name: str) -> None:
        with locked(self.path):
            profiles = self._read()
            self.raw(name)
            del profiles[name]
            self._write(profiles)
