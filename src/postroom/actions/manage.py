"""*Change status*, *Move*, *Move all*, *Delete*: batched, server-side, by stable keys.

Every bulk call returns one :class:`~postroom.transports.contract.ItemResult` per
message, in the order given, so a bot knows what happened to each one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from postroom.actions._resolve import MessageRef, SessionRef, keys_of, require, resolve
from postroom.actions.loop import messages as loop_messages
from postroom.errors import ConfigError
from postroom.message.keys import MessageKey
from postroom.session.retry import OperationKind
from postroom.transports.call_options import call_options
from postroom.transports.contract import Deletes, Flags, ItemResult, Keywords, Mailbox, Moves, check_flag_names
from postroom.validation import check_one_line

__all__ = [
    "add_flags",
    "delete",
    "flag",
    "mark_read",
    "mark_unread",
    "move",
    "move_all",
    "remove_flags",
    "unflag",
]


def _run(
    session: SessionRef,
    ability: type,
    what: str,
    operation: Callable[[Any, list[MessageKey]], list[ItemResult]],
    items: MessageRef | Iterable[MessageRef],
    *,
    kind: OperationKind,
    **options: Any,
) -> list[ItemResult]:
    resolved = resolve(session)
    require(resolved, ability, what)
    keys = keys_of(resolved, items)
    if not keys:
        return []

    def run(mailbox: Mailbox) -> list[ItemResult]:
        with call_options(**options):
            return operation(mailbox, keys)

    return resolved.call(run, kind=kind)


def mark_read(session: SessionRef, messages: MessageRef | Iterable[MessageRef]) -> list[ItemResult]:
    """Mark messages read (IMAP ``\\Seen``)."""
    return _mark(session, messages, seen=True)


def mark_unread(session: SessionRef, messages: MessageRef | Iterable[MessageRef]) -> list[ItemResult]:
    """Mark messages unread."""
    return _mark(session, messages, seen=False)


def add_flags(session: SessionRef, messages: MessageRef | Iterable[MessageRef], *flags: str) -> list[ItemResult]:
    """Add flags other than read: ``"\\Flagged"``, ``"\\Answered"``, ``"\\Draft"``, or keywords (``"Invoice"``)
    where the server keeps them (IMAP). A bad flag name is refused before anything is sent."""
    return _flags(session, messages, flags, on=True)


def remove_flags(session: SessionRef, messages: MessageRef | Iterable[MessageRef], *flags: str) -> list[ItemResult]:
    """Remove flags (see :func:`add_flags`)."""
    return _flags(session, messages, flags, on=False)


def flag(session: SessionRef, messages: MessageRef | Iterable[MessageRef]) -> list[ItemResult]:
    """Flag messages for follow-up (IMAP ``\\Flagged``, the star or the flag in mail clients)."""
    return add_flags(session, messages, "\\Flagged")


def unflag(session: SessionRef, messages: MessageRef | Iterable[MessageRef]) -> list[ItemResult]:
    """Clear the follow-up flag."""
    return remove_flags(session, messages, "\\Flagged")


def _flags(
    session: SessionRef, messages: MessageRef | Iterable[MessageRef], flags: tuple[str, ...], *, on: bool
) -> list[ItemResult]:
    check_flag_names(flags)
    return _run(
        session,
        Keywords,
        "setting flags",
        lambda m, keys: cast(Keywords, m).set_flags(keys, flags, on),
        messages,
        kind="flags",
    )


def _mark(session: SessionRef, messages: MessageRef | Iterable[MessageRef], *, seen: bool) -> list[ItemResult]:
    return _run(
        session,
        Flags,
        "changing read status",
        lambda m, keys: cast(Flags, m).set_seen(keys, seen),
        messages,
        kind="flags",
    )


def move(
    session: SessionRef,
    messages: MessageRef | Iterable[MessageRef],
    folder: str,
    *,
    allow_expunge_all: bool = False,
) -> list[ItemResult]:
    """Move messages to ``folder`` (IMAP: ``UID MOVE``, else ``UID COPY`` + ``UID EXPUNGE`` of exactly them).

    An IMAP server with neither MOVE nor UIDPLUS is refused before anything changes,
    unless ``allow_expunge_all=True`` accepts a plain EXPUNGE (postroom lifts other
    messages' ``\\Deleted`` flag around it and restores it after).
    """
    if not isinstance(folder, str) or not folder.strip():
        raise ConfigError("folder", f"{folder!r} is not a folder name", hint="e.g. 'Processed' or 'INBOX/Done'")
    check_one_line("folder", folder, hint="e.g. 'Processed' or 'INBOX/Done'; nothing was moved")
    return _run(
        session,
        Moves,
        "moving messages",
        lambda m, keys: cast(Moves, m).move(keys, folder),
        messages,
        kind="move",
        allow_expunge_all=allow_expunge_all,
    )


def delete(
    session: SessionRef, messages: MessageRef | Iterable[MessageRef], *, allow_expunge_all: bool = False
) -> list[ItemResult]:
    """Delete messages for good (IMAP: ``\\Deleted`` + ``UID EXPUNGE``; POP3: ``DELE``, committed on disconnect)."""
    return _run(
        session,
        Deletes,
        "deleting messages",
        lambda m, keys: cast(Deletes, m).delete(keys),
        messages,
        kind="delete",
        allow_expunge_all=allow_expunge_all,
    )


#: Loop options that narrow the set (the folder and the order alone do not).
_SELECTING = ("subject", "sender", "since", "before", "limit", "filter")


def move_all(
    session: SessionRef,
    destination: str,
    /,
    *,
    everything: bool = False,
    allow_expunge_all: bool = False,
    **filters: Any,
) -> list[ItemResult]:
    """Move every message matching ``filters`` (the loop's options, ``folder=`` included) to ``destination``.

    Without a narrowing filter (``subject``, ``sender``, ``status``, ``since``, ``before``, ``limit``) it
    refuses to move a whole folder unless ``everything=True``, as the CLI does without ``--all``.
    """
    narrowed = any(filters.get(name) for name in _SELECTING) or filters.get("status", "all") != "all"
    if not narrowed and not everything:
        raise ConfigError(
            "filters",
            f"refusing to move every message of {filters.get('folder', 'INBOX')} without a filter; nothing was moved",
            hint="narrow it (subject=..., sender=..., status=..., since=...) or pass everything=True",
        )
    keys: list[MessageRef] = [message.key for message in loop_messages(session, **filters)]
    return move(session, keys, destination, allow_expunge_all=allow_expunge_all)
