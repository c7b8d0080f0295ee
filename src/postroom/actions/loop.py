"""*Loop over messages*: a lazy iterator over the messages of a session that match a filter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import BinaryIO

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.filters import MessageFilter, Order, Status
from postroom.message.model import BodyFormat, Message
from postroom.message.structure import MimePart
from postroom.message.summary import MessageKey
from postroom.session import Session
from postroom.transports.base import Mailbox

__all__ = ["SessionSource", "messages"]

#: Messages whose headers are fetched per round trip while looping.
LOOP_CHUNK = 500


class SessionSource:
    """Fetches message parts through a session (so a dropped connection reconnects)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        return self.session.call(lambda mailbox: mailbox.part_content(key, part))

    def header_block(self, key: MessageKey) -> bytes:
        return self.session.call(lambda mailbox: mailbox.header_block(key))

    def raw(self, key: MessageKey) -> bytes:
        return self.session.call(lambda mailbox: mailbox.raw(key))

    def stream_part(self, key: MessageKey, part: MimePart, sink: BinaryIO) -> int:
        def attempt(mailbox: Mailbox) -> int:
            sink.seek(0)  # a retry after a reconnect starts the file over
            sink.truncate()
            return mailbox.stream_part(key, part, sink.write)

        return self.session.call(attempt)


def messages(
    session: SessionRef,
    folder: str = "INBOX",
    *,
    include_subfolders: bool = False,
    status: Status = "all",
    subject: str | None = None,
    sender: str | Iterable[str] | None = None,
    since: dt.date | dt.datetime | None = None,
    before: dt.date | dt.datetime | None = None,
    regex: bool = False,
    case_sensitive: bool = False,
    order: Order = "newest",
    limit: int | None = None,
    body_format: BodyFormat = "plain",
    filter: MessageFilter | None = None,
) -> Iterator[Message]:
    """Yield the messages of ``session`` that match, lazily, in ``order``.

    The matching set is taken when the loop starts (by stable keys), so moving or
    deleting a message inside the loop never skips or repeats another one. Headers
    come in chunks; bodies and attachments are fetched only when used. Reading
    never changes a message's read status. POP3 has only the inbox and no read
    status: asking for either fails before any command is sent.
    """
    chosen = filter or MessageFilter(
        folder=folder,
        include_subfolders=include_subfolders,
        status=status,
        subject=subject,
        senders=tuple([sender] if isinstance(sender, str) else (sender or ())),
        since=since,
        before=before,
        regex=regex,
        case_sensitive=case_sensitive,
        order=order,
        limit=limit,
    )
    resolved = resolve(session)
    if chosen.status != "all":
        require(resolved, "flags", "filtering on read status")
    if chosen.folder.upper() != "INBOX" or chosen.include_subfolders:
        require(resolved, "folders", f"looping over folder {chosen.folder!r}")
    return _iterate(resolved, chosen, body_format)


def _iterate(session: Session, chosen: MessageFilter, body_format: BodyFormat) -> Iterator[Message]:
    keys = session.call(lambda mailbox: mailbox.search(chosen))
    source = SessionSource(session)
    yielded = 0
    for _folder, group in groupby(keys, key=lambda key: key.folder):
        folder_keys = list(group)
        for start in range(0, len(folder_keys), LOOP_CHUNK):
            chunk = folder_keys[start : start + LOOP_CHUNK]
            for summary in session.call(lambda mailbox, c=chunk: mailbox.summaries(c)):  # type: ignore[misc]
                message = Message(summary, source, body_format=body_format)
                if not _matches(chosen, message):
                    continue
                yield message
                yielded += 1
                if chosen.limit is not None and yielded >= chosen.limit:
                    return


def _matches(chosen: MessageFilter, message: Message) -> bool:
    return (
        chosen.matches_status(message.seen)
        and chosen.matches_date(message.received_date)
        and chosen.matches_subject(message.subject)
        and chosen.matches_sender(message.sender_text)
    )
