"""Where incremental loops keep their place: one position per loop name, mailbox and folder.

A position is the transport's own JSON (Graph: the folder's delta link and the ids already
yielded). The default store is a file per position under postroom's folder, written
atomically under a lock; a runtime can be given another (a bot runner's database).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from postroom.errors import ConfigError
from postroom.paths import home_dir, locked, write_private_file

__all__ = ["FilePositions", "PositionStore"]


class PositionStore(Protocol):
    """Loads and saves positions by name."""

    def load(self, name: str) -> dict[str, Any] | None:
        """The position saved under ``name``, or None."""
        ...

    def save(self, name: str, position: dict[str, Any]) -> None:
        """Keep ``position`` under ``name`` (replacing what was there)."""
        ...

    def forget(self, name: str) -> None:
        """Drop the position saved under ``name`` (the next loop starts over)."""
        ...


class FilePositions:
    """Positions as JSON files in ``folder`` (default: ``positions/`` in postroom's folder)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder

    def _path(self, name: str) -> Path:
        folder = self.folder or home_dir() / "positions"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        return folder / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".json")

    def load(self, name: str) -> dict[str, Any] | None:
        path = self._path(name)
        with locked(path):
            if not path.exists():
                return None
            try:
                record = json.loads(path.read_bytes())
            except ValueError:
                raise ConfigError(
                    "since_last", f"the saved position {path} is not JSON", hint="delete it: the loop starts over"
                ) from None
        if not isinstance(record, dict) or record.get("name") != name:
            return None
        position = record.get("position")
        return position if isinstance(position, dict) else None

    def save(self, name: str, position: dict[str, Any]) -> None:
        path = self._path(name)
        with locked(path):
            write_private_file(path, json.dumps({"name": name, "position": position}).encode())

    def forget(self, name: str) -> None:
        path = self._path(name)
        with locked(path):
            path.unlink(missing_ok=True)
