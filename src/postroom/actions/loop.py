"""*Loop over messages*: a lazy iterator over the messages of a session that match a filter."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import BinaryIO

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.errors import ProtocolError
from postroom.filters import MessageFilter, Order, Status
from postroom.message.model import BodyFormat, Message
from postroom.message.structure import MimePart
from postroom.message.summary import MessageKey
from postroom.session import Session
from postroom.transports.base import Mailbox

__all__ = ["MessageLoop", "SessionSource", "get_message", "messages"]

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


class MessageLoop(Iterator[Message]):
    """The messages of one loop. The set is taken when the loop is created (``candidates`` is its size)."""

    def __init__(self, session: Session, chosen: MessageFilter, body_format: BodyFormat) -> None:
        self.session = session
        self.filter = chosen
        self.keys = session.call(lambda mailbox: mailbox.search(chosen))
        #: How many of the candidates have been looked at so far (for progress bars).
        self.scanned = 0
        self._iterator = self._iterate(body_format)

    @property
    def candidates(self) -> int:
        """Messages the server matched; the client-side checks may drop some."""
        return len(self.keys)

    def __next__(self) -> Message:
        return next(self._iterator)

    def _iterate(self, body_format: BodyFormat) -> Iterator[Message]:
        source = SessionSource(self.session)
        yielded = 0
        for _folder, group in groupby(self.keys, key=lambda key: key.folder):
            folder_keys = list(group)
            for start in range(0, len(folder_keys), LOOP_CHUNK):
                chunk = folder_keys[start : start + LOOP_CHUNK]
                summaries = self.session.call(lambda mailbox, c=chunk: mailbox.summaries(c))  # type: ignore[misc]
                for summary in summaries:
                    self.scanned += 1
                    message = Message(summary, source, body_format=body_format)
                    if not _matches(self.filter, message):
                        continue
                    yield message
                    yielded += 1
                    if self.filter.limit is not None and yielded >= self.filter.limit:
                        return
                self.scanned += len(chunk) - len(summaries)  # gone since the search


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
) -> MessageLoop:
    """The messages of ``session`` that match, lazily, in ``order``.

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
    return MessageLoop(resolved, chosen, body_format)


def get_message(session: SessionRef, key: MessageKey | str, *, body_format: BodyFormat = "plain") -> Message:
    """One message by its key (as printed by ``postroom list``)."""
    resolved = resolve(session)
    wanted = MessageKey.parse(key) if isinstance(key, str) else key
    found = resolved.call(lambda mailbox: mailbox.summaries([wanted]))
    if not found:
        raise ProtocolError(f"message {wanted} is not there", hint="it was moved or deleted; list the folder again")
    return Message(found[0], SessionSource(resolved), body_format=body_format)


def _matches(chosen: MessageFilter, message: Message) -> bool:
    return (
        chosen.matches_status(message.seen)
        and chosen.matches_date(message.received_date)
        and chosen.matches_subject(message.subject)
        and chosen.matches_sender(message.sender_text)
    )
