"""Where postroom keeps its files: the vault, its key file, connection profiles.

``POSTROOM_HOME`` overrides the per-OS default (``~/.config/postroom`` on Linux,
``~/Library/Application Support/postroom`` on macOS, ``%APPDATA%\\postroom`` on Windows).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["home_dir", "write_private_file"]


def home_dir() -> Path:
    """postroom's folder for this user, created (owner-only) if missing."""
    override = os.environ.get("POSTROOM_HOME")
    path = Path(override) if override else Path(platformdirs.user_config_dir("postroom", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path``, readable only by its owner.

    The bytes go to a temp file in the same folder which then replaces ``path``,
    so a crash never leaves a half-written vault or profile behind.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
