"""*Get folders*: the folders of a session."""

from __future__ import annotations

from typing import cast

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.errors import ConfigError
from postroom.transports.contract import CreatesFolders, Folder, Folders

__all__ = ["create_folder", "folders"]


def folders(session: SessionRef, pattern: str = "*") -> list[Folder]:
    """Folders matching ``pattern`` (``*`` any depth, ``%`` one level); a server without folders (POP3) has
    only ``INBOX``."""
    resolved = resolve(session)
    if not resolved.can(Folders):
        return [Folder("INBOX", None)]
    return resolved.call(lambda mailbox: cast(Folders, mailbox).folders(pattern))


def create_folder(session: SessionRef, name: str) -> Folder:
    """Create folder ``name`` (``/`` between levels, e.g. ``"Processed/2026"``; the levels above come too).

    A folder that exists already is returned as it is, so a bot may call this on every run.
    """
    if not isinstance(name, str) or not name.strip("/ ") or any(ch in name for ch in "\r\n\0*%"):
        raise ConfigError("name", f"{name!r} is not a folder name", hint="e.g. 'Processed' or 'Processed/2026'")
    resolved = resolve(session)
    require(resolved, CreatesFolders, "creating folders")
    return resolved.call(lambda mailbox: cast(CreatesFolders, mailbox).create_folder(name.strip("/ ")), kind="folder")
