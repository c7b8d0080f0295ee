"""EWS's message key: the folder path and Exchange's item id."""

from __future__ import annotations

from dataclasses import dataclass

from postroom.message.keys import MessageKey

__all__ = ["EwsKey"]


@dataclass(frozen=True, order=True, slots=True)
class EwsKey(MessageKey, scheme="ews"):
    """``ews:INBOX;ID=AAMk…``; the id changes when the item moves, so a move returns the new key."""

    folder: str
    item_id: str

    def __str__(self) -> str:
        return f"ews:{self.folder};ID={self.item_id}"

    @property
    def id(self) -> str:
        return self.item_id

    @classmethod
    def from_text(cls, text: str) -> EwsKey | None:
        folder, _, item_id = text.rpartition(";ID=")
        return cls(folder, item_id) if folder and item_id else None
