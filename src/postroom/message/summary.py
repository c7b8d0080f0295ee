"""What a transport hands over for each message in a loop: identity, flags, headers, structure.

Data only: transports build these; :class:`~postroom.message.model.Message` reads them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from postroom.message.structure import MimePart

__all__ = ["MessageKey", "MessageSummary"]


@dataclass(frozen=True, order=True, slots=True)
class MessageKey:
    """A stable address for one message: IMAP (folder, UIDVALIDITY, UID) or POP3 UIDL. Never a sequence number."""

    folder: str
    uidvalidity: int = 0
    uid: int = 0
    uidl: str | None = None

    def __str__(self) -> str:
        if self.uidl is not None:
            return f"pop3:{self.uidl}"
        return f"{self.folder};UIDVALIDITY={self.uidvalidity};UID={self.uid}"


@dataclass(frozen=True)
class MessageSummary:
    """One message as listed: enough to filter and to describe it without its body."""

    key: MessageKey
    header: bytes
    flags: frozenset[str] | None
    size: int
    received: dt.datetime | None
    structure: MimePart | None = None
