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
from postroom.errors import SessionNotFoundError
from postroom.paths import home_dir, write_private_file
from postroom.transports.registry import backend, backend_for

__all__ = ["ProfileStore"]


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
        settings = backend_for(config).to_profile(config)
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
        entry = backend(settings.get("protocol", "imap"))
        return entry.from_profile(settings, auth_from_profile(record["auth"]))

    def delete(self, name: str) -> None:
        profiles = self._read()
        self.raw(name)
        del profiles[name]
        write_private_file(self.path, json.dumps(profiles, indent=2, sort_keys=True).encode("utf-8"))
