"""Named connection profiles: connection settings saved for later commands.

A profile holds settings and secret *references* only (``vault:``, ``var:``,
``env:``), never a secret in clear. It is a JSON file in postroom's home folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from postroom.auth import Basic
from postroom.config import EmailServer
from postroom.credentials import Insecure
from postroom.credentials.refs import format_ref, parse_ref
from postroom.errors import ConfigError, SessionNotFoundError
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

    def save(self, name: str, config: EmailServer) -> dict[str, Any]:
        """Store ``config`` as ``name``. Its secrets must be references, not insecure strings."""
        auth = config.auth
        if not isinstance(auth, Basic):
            raise ConfigError("auth", f"profiles cannot store {auth.kind!r} yet")
        refs = {}
        for field_name in ("username", "password"):
            ref = getattr(auth, field_name)
            if isinstance(ref, Insecure):
                raise ConfigError(field_name, "an insecure string cannot be stored in a profile", hint="use vault:")
            refs[field_name] = format_ref(ref)
        settings = {key: getattr(config, key) for key in _SETTINGS if key not in config.preset_fields}
        if settings.get("ca_file") is not None:
            settings["ca_file"] = str(Path(settings["ca_file"]).resolve())
        record = {"settings": settings, "auth": {"mode": auth.kind, **refs}}
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

    def load(self, name: str) -> EmailServer:
        record = self.raw(name)
        auth = record["auth"]
        if auth.get("mode") != "basic":
            raise ConfigError("auth", f"profile {name!r} uses an auth mode this version does not know")
        basic = Basic(
            username=parse_ref(auth["username"], "username"), password=parse_ref(auth["password"], "password")
        )
        return EmailServer(auth=basic, **record["settings"])

    def delete(self, name: str) -> None:
        profiles = self._read()
        self.raw(name)
        del profiles[name]
        write_private_file(self.path, json.dumps(profiles, indent=2, sort_keys=True).encode("utf-8"))
