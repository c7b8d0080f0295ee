"""IMAP's message keys: (folder, UIDVALIDITY, UID), and a compact run of UIDs."""

from __future__ import annotations

import array
from dataclasses import dataclass, field

from postroom.message.keys import KeyRun, MessageKey

__all__ = ["ImapKey", "UidRun", "uid_key_parts"]


@dataclass(frozen=True, order=True, slots=True)
class ImapKey(MessageKey, scheme="imap", prefixed=False):
    """``INBOX;UIDVALIDITY=123;UID=45``: valid while the folder's UIDVALIDITY stays the same."""

    folder: str
    uidvalidity: int
    uid: int

    def __str__(self) -> str:
        return f"{self.folder};UIDVALIDITY={self.uidvalidity};UID={self.uid}"

    @property
    def id(self) -> int:
        return self.uid

    @property
    def epoch(self) -> str:
        return str(self.uidvalidity)

    @classmethod
    def from_text(cls, text: str) -> ImapKey | None:
        parts = uid_key_parts(text)
        return cls(*parts) if parts is not None else None


def uid_key_parts(text: str) -> tuple[str, int, int] | None:
    """``(folder, UIDVALIDITY, UID)`` of ``FOLDER;UIDVALIDITY=N;UID=N``, or None."""
    folder, _, rest = text.rpartition(";UIDVALIDITY=")
    validity, _, uid = rest.partition(";UID=")
    if not folder or not validity.isdigit() or not uid.isdigit():
        return None
    return folder, int(validity), int(uid)


@dataclass(frozen=True)
class UidRun(KeyRun):
    """The UIDs of one folder, 4 bytes each: a mailbox of 100,000 messages costs 400 KB, not 100,000 keys."""

    folder: str
    uidvalidity: int
    uids: array.array[int] = field(default_factory=lambda: array.array("I"))

    def __len__(self) -> int:
        return len(self.uids)

    def keys(self, start: int = 0, stop: int | None = None) -> list[MessageKey]:
        folder, validity = self.folder, self.uidvalidity
        return [ImapKey(folder, validity, uid) for uid in self.uids[start:stop]]
