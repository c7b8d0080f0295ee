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

    @classmethod
    def parse(cls, text: str) -> MessageKey:
        """The key from its ``str()`` form (``INBOX;UIDVALIDITY=123;UID=45`` or ``pop3:UIDL``)."""
        if text.startswith("pop3:") and len(text) > 5:
            return cls("INBOX", uidl=text[5:])
        folder, _, rest = text.rpartition(";UIDVALIDITY=")
        validity, _, uid = rest.partition(";UID=")
        if not folder or not validity.isdigit() or not uid.isdigit():
            from postroom.errors import ConfigError

            raise ConfigError("key", f"{text!r} is not a message key", hint="copy it from `postroom list --json`")
        return cls(folder, int(validity), int(uid))


@dataclass(frozen=True)
class MessageSummary:
    """One message as listed: enough to filter and to describe it without its body."""

    key: MessageKey
    header: bytes
    flags: frozenset[str] | None
    size: int
    received: dt.datetime | None
    structure: MimePart | None = None
    #: Section 1 as fetched along with the summary (first ``PREFETCH_BYTES`` only), when the loop asked for it.
    first_section: bytes | None = None
