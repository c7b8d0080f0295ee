"""Finding the session an action runs on, its messages, and checking what it can do before touching the server."""

from __future__ import annotations

from collections.abc import Iterable

from postroom.errors import ConfigError, UnsupportedError
from postroom.message.keys import MessageKey
from postroom.message.model import Message
from postroom.session import Session, get_session
from postroom.transports.contract import ABILITY_NAMES

__all__ = ["MessageRef", "SessionRef", "keys_of", "require", "resolve"]

SessionRef = str | Session
#: A message from a loop, its key, or the key's string form (``postroom list --json``, a log line).
MessageRef = Message | MessageKey | str


def resolve(session: SessionRef) -> Session:
    """The open session named ``session`` in the current runtime (or the session itself)."""
    return session if isinstance(session, Session) else get_session(session)


def require(session: Session, ability: type, what: str, *, hint: str | None = None) -> None:
    """Refuse, before any command is sent, an action the session's mailbox cannot do."""
    if not session.can(ability):
        raise UnsupportedError(
            f"{what} is not possible on {session.label}: it has no {ABILITY_NAMES.get(ability, ability.__name__)}",
            hint=hint
            or "connect with protocol='imap' for folders, read status and moves; nothing was sent to the server",
            session=session.name,
            server=session.server,
        )


def keys_of(session: Session, items: MessageRef | Iterable[MessageRef]) -> list[MessageKey]:
    """The keys of ``items``, each checked to belong to ``session``'s kind of server."""
    if isinstance(items, Message | MessageKey | str):
        items = [items]
    keys = []
    for item in items:
        if isinstance(item, Message):
            key = item.key
        elif isinstance(item, MessageKey | str):
            key = MessageKey.parse(item)
        else:
            raise ConfigError("messages", f"expected messages from a loop or their keys, got {type(item).__name__}")
        keys.append(session.check_key(key))
    return keys
