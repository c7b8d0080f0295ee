"""Outlook's message key: the folder path and Graph's immutable item id."""

from __future__ import annotations

from dataclasses import dataclass

from postroom.message.keys import MessageKey

__all__ = ["GraphKey"]


@dataclass(frozen=True, order=True, slots=True)
class GraphKey(MessageKey, scheme="outlook"):
    """``outlook:INBOX;ID=AAkALg…``. Every request asks for immutable ids, so the id survives a move
    within the mailbox (the folder part of a moved message's new key changes, its id does not)."""

    folder: str
    item_id: str

    def __str__(self) -> str:
        return f"outlook:{self.folder};ID={self.item_id}"

    @property
    def id(self) -> str:
        return self.item_id

    @classmethod
    def from_text(cls, text: str) -> GraphKey | None:
        folder, _, item_id = text.rpartition(";ID=")
        return cls(folder, item_id) if folder and item_id else None
