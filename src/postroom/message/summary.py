"""What a transport hands over for each message in a loop: identity, flags, headers, structure.

Data only: transports build these; :class:`~postroom.message.model.Message` reads them.
"""

from __future__ import annotations

import array
import datetime as dt
from dataclasses import dataclass, field

from postroom.message.structure import MimePart

__all__ = ["KeyRun", "MessageKey", "MessageSummary"]


@dataclass(frozen=True, order=True, slots=True)
class MessageKey:
    """A stable address for one message: IMAP (folder, UIDVALIDITY, UID), POP3 UIDL or EWS item id.
    Never a sequence number."""

    folder: str
    uidvalidity: int = 0
    uid: int = 0
    uidl: str | None = None
    item_id: str | None = None

    def __str__(self) -> str:
        if self.uidl is not None:
            return f"pop3:{self.uidl}"
        if self.item_id is not None:
            return f"ews:{self.folder};ID={self.item_id}"
        return f"{self.folder};UIDVALIDITY={self.uidvalidity};UID={self.uid}"

    @property
    def id(self) -> int | str:
        """The key within its folder: IMAP UID, POP3 UIDL or EWS item id."""
        if self.uidl is not None:
            return self.uidl
        return self.item_id if self.item_id is not None else self.uid

    @classmethod
    def parse(cls, text: str) -> MessageKey:
        """The key from its ``str()`` form (``INBOX;UIDVALIDITY=123;UID=45``, ``pop3:UIDL`` or ``ews:INBOX;ID=…``)."""
        if text.startswith("pop3:") and len(text) > 5:
            return cls("INBOX", uidl=text[5:])
        if text.startswith("ews:") and ";ID=" in text:
            folder, _, item_id = text[4:].rpartition(";ID=")
            if folder and item_id:
                return cls(folder, item_id=item_id)
        folder, _, rest = text.rpartition(";UIDVALIDITY=")
        validity, _, uid = rest.partition(";UID=")
        if not folder or not validity.isdigit() or not uid.isdigit():
            from postroom.errors import ConfigError

            raise ConfigError("key", f"{text!r} is not a message key", hint="copy it from `postroom list --json`")
        return cls(folder, int(validity), int(uid))


@dataclass(frozen=True)
class KeyRun:
    """Keys of one folder, stored compactly (4 bytes a UID): what a search returns, in loop order.

    A mailbox of 100,000 messages costs 400 KB here instead of 100,000 key objects.
    """

    folder: str
    uidvalidity: int = 0
    uids: array.array[int] = field(default_factory=lambda: array.array("I"))
    uidls: tuple[str, ...] = ()
    item_ids: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.uidls or self.item_ids) if (self.uidls or self.item_ids) else len(self.uids)

    def keys(self, start: int = 0, stop: int | None = None) -> list[MessageKey]:
        """:class:`MessageKey` objects for the slice ``start:stop``."""
        if self.uidls:
            return [MessageKey(self.folder, uidl=uidl) for uidl in self.uidls[start:stop]]
        if self.item_ids:
            return [MessageKey(self.folder, item_id=item_id) for item_id in self.item_ids[start:stop]]
        return [MessageKey(self.folder, self.uidvalidity, uid) for uid in self.uids[start:stop]]


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
    #: Problems the transport met building this summary (e.g. characters EWS could not carry), in words.
    defects: tuple[str, ...] = ()
