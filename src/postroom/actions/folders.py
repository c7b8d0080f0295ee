"""*Get folders*: the folders of a session."""

from __future__ import annotations

from typing import cast

from postroom.actions._resolve import SessionRef, resolve
from postroom.transports.contract import Folder, Folders

__all__ = ["folders"]


def folders(session: SessionRef, pattern: str = "*") -> list[Folder]:
    """Folders matching ``pattern`` (``*`` any depth, ``%`` one level); a server without folders (POP3) has
    only ``INBOX``."""
    resolved = resolve(session)
    if not resolved.can(Folders):
        return [Folder("INBOX", None)]
    return resolved.call(lambda mailbox: cast(Folders, mailbox).folders(pattern))
