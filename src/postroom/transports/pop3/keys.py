"""POP3's message key: the UIDL, stable across sessions (never the message number)."""

from __future__ import annotations

from dataclasses import dataclass

from postroom.message.keys import MessageKey

__all__ = ["Pop3Key"]


@dataclass(frozen=True, order=True, slots=True)
class Pop3Key(MessageKey, scheme="pop3"):
    """``pop3:UIDL``; POP3 has one folder, the inbox."""

    uidl: str

    def __str__(self) -> str:
        return f"pop3:{self.uidl}"

    @property
    def folder(self) -> str:  # type: ignore[override]  # a constant where other keys have a field
        return "INBOX"

    @property
    def id(self) -> str:
        return self.uidl

    @classmethod
    def from_text(cls, text: str) -> Pop3Key | None:
        return cls(text) if text else None
