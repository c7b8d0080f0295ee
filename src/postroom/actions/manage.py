"""*Change status*, *Move*, *Move all*, *Delete*: batched, server-side, by stable keys.

Every bulk call returns one :class:`~postroom.transports.base.ItemResult` per
message, in the order given, so a bot knows what happened to each one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.actions.loop import messages as loop_messages
from postroom.errors import ConfigError
from postroom.message.model import Message
from postroom.message.summary import MessageKey
from postroom.transports.base import ItemResult, Mailbox

__all__ = ["delete", "mark_read", "mark_unread", "move", "move_all"]

MessageRef = Message | MessageKey


def _keys(items: MessageRef | Iterable[MessageRef]) -> list[MessageKey]:
    if isinstance(items, Message | MessageKey):
        items = [items]
    keys = []
    for item in items:
        if isinstance(item, Message):
            keys.append(item.key)
        elif isinstance(item, MessageKey):
            keys.append(item)
        else:
            raise ConfigError("messages", f"expected messages from a loop or their keys, got {type(item).__name__}")
    return keys


def _run(
    session: SessionRef,
    operation: Callable[[Mailbox, list[MessageKey]], list[ItemResult]],
    items: MessageRef | Iterable[MessageRef],
) -> list[ItemResult]:
    keys = _keys(items)
    if not keys:
        return []
    resolved = resolve(session)
    return resolved.call(lambda mailbox: operation(mailbox, keys))


def mark_read(session: SessionRef, messages: MessageRef | Iterable[MessageRef]) -> list[ItemResult]:
    """Mark messages read (IMAP ``\\Seen``)."""
    require(resolve(session), "flags", "changing read status")
    return _run(session, lambda mailbox, keys: mailbox.set_seen(keys, True), messages)


def mark_unread(session: SessionRef, messages: MessageRef | Iterable[MessageRef]) -> list[ItemResult]:
    """Mark messages unread."""
    require(resolve(session), "flags", "changing read status")
    return _run(session, lambda mailbox, keys: mailbox.set_seen(keys, False), messages)


def move(
    session: SessionRef,
    messages: MessageRef | Iterable[MessageRef],
    folder: str,
    *,
    allow_expunge_all: bool = False,
) -> list[ItemResult]:
    """Move messages to ``folder`` (``UID MOVE``, else ``UID COPY`` + ``UID EXPUNGE`` of exactly them).

    A server with neither MOVE nor UIDPLUS is refused before anything changes,
    unless ``allow_expunge_all=True`` accepts a plain EXPUNGE (postroom lifts other
    messages' ``\\Deleted`` flag around it and restores it after).
    """
    require(resolve(session), "move", "moving messages")
    if not isinstance(folder, str) or not folder.strip() or any(ch in folder for ch in "\r\n\0"):
        raise ConfigError("folder", f"{folder!r} is not a folder name", hint="e.g. 'Processed' or 'INBOX/Done'")
    return _run(
        session, lambda mailbox, keys: mailbox.move(keys, folder, allow_expunge_all=allow_expunge_all), messages
    )


def delete(
    session: SessionRef, messages: MessageRef | Iterable[MessageRef], *, allow_expunge_all: bool = False
) -> list[ItemResult]:
    """Delete messages for good (IMAP: ``\\Deleted`` + ``UID EXPUNGE``; POP3: ``DELE``, committed on disconnect)."""
    return _run(session, lambda mailbox, keys: mailbox.delete(keys, allow_expunge_all=allow_expunge_all), messages)


def move_all(session: SessionRef, folder: str, *, allow_expunge_all: bool = False, **filters: Any) -> list[ItemResult]:
    """Move every message matching ``filters`` (the loop's options) to ``folder``, in batches."""
    keys = [message.key for message in loop_messages(session, **filters)]
    return move(session, keys, folder, allow_expunge_all=allow_expunge_all)
