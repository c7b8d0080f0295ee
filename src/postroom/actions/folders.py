"""*Get folders*: the folders of a session."""

from __future__ import annotations

from postroom.actions._resolve import SessionRef, resolve
from postroom.transports.base import Folder

__all__ = ["folders"]


def folders(session: SessionRef, pattern: str = "*") -> list[Folder]:
    """Folders matching ``pattern`` (``*`` any depth, ``%`` one level); POP3 has only ``INBOX``."""
    return resolve(session).call(lambda mailbox: mailbox.folders(pattern))
