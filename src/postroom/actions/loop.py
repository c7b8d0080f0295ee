"""*Loop over messages*: a lazy iterator over the messages of a session that match a filter."""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, BinaryIO, cast

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.errors import ConfigError, ProtocolError
from postroom.filters import MessageFilter, Order, Status
from postroom.message.keys import MessageKey
from postroom.message.model import BodyFormat, Message
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.session import Session
from postroom.transports.contract import (
    FetchesAhead,
    FetchesBodies,
    FetchesBodiesAhead,
    Flags,
    Folders,
    Mailbox,
    ParsesWhole,
    ResumesParts,
    Syncs,
)
from postroom.validation import check_one_line

__all__ = ["MessageLoop", "SessionSource", "get_message", "matches", "messages"]

#: Messages whose headers are fetched per request while looping (the next chunk's request goes out
#: while this one is processed, so two chunks may be in memory).
LOOP_CHUNK = 1000
#: The first chunk of a loop: small, so that body prefetching starts early.
FIRST_CHUNK = 100


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

    def structure(self, key: MessageKey, defects: list[str]) -> MimePart | None:
        """The structure from the mailbox when it parses whole messages anyway (POP3), else None."""
        if not self.session.can(ParsesWhole):
            return None
        return self.session.call(lambda mailbox: cast(ParsesWhole, mailbox).structure(key, defects))

    def stream_part(self, key: MessageKey, part: MimePart, sink: BinaryIO) -> int:
        written = 0

        def write(data: bytes) -> None:
            nonlocal written
            sink.write(data)
            written += len(data)

        def attempt(mailbox: Mailbox) -> int:
            nonlocal written
            if isinstance(mailbox, ResumesParts):  # a repeat after a drop carries on after what was written
                sink.seek(written)
                sink.truncate()
                start = written
                return start + mailbox.stream_part_from(key, part, write, start)
            sink.seek(0)  # a retry after a reconnect starts the file over
            sink.truncate()
            written = 0
            return mailbox.stream_part(key, part, write)

        return self.session.call(attempt)


class MessageLoop(Iterator[Message]):
    """The messages of one loop. The set is taken when the loop is created (``candidates`` is its size)."""

    def __init__(
        self, session: Session, chosen: MessageFilter, body_format: BodyFormat, *, since_last: str | None = None
    ) -> None:
        self.session = session
        self.filter = chosen
        #: The position to save once the loop has been read to its end (incremental loops only).
        self._after: tuple[str, dict[str, Any]] | None = None
        if since_last is None:
            self.runs = session.call(lambda mailbox: mailbox.search(chosen))
        else:
            folder = "/".join(part for part in chosen.folder.split("/") if part).casefold()
            name = f"{since_last}\n{session.config.address}\n{folder}"
            saved = session.positions.load(name)
            run, after = session.call(lambda mailbox: cast(Syncs, mailbox).changes(chosen, saved))
            self.runs = [run]
            self._after = (name, after)
        #: How many of the candidates have been looked at so far (for progress bars).
        self.scanned = 0
        #: Whether the next chunk's summaries are sent for while this one is processed (see ``_summaries``).
        self._fetch_ahead = session.can(FetchesAhead)
        #: Whether the next chunk's bodies are sent for too (see ``_send_ahead``).
        self._bodies_ahead = session.can(FetchesBodiesAhead)
        self._reconnects_when_sent = 0  # a request sent ahead and lost to a reconnect is no reason to stop
        self._iterator = self._iterate(body_format)

    @property
    def candidates(self) -> int:
        """Messages the server matched; the client-side checks may drop some."""
        return sum(len(run) for run in self.runs)

    def __next__(self) -> Message:
        return next(self._iterator)

    def _iterate(self, body_format: BodyFormat) -> Iterator[Message]:
        yielded = 0
        bodies_wanted = learned = False
        sent: dict[int, bool] = {}  # chunks (by index) whose summaries were sent for ahead -> with bodies or not
        chunks = self._chunks()
        window = deque(islice(chunks, 3))  # this chunk and the two after it
        index = 0
        while window:
            chunk = window[0]
            ahead = sent.pop(index, None)
            with_bodies = bodies_wanted if ahead is None else ahead  # what a request sent ahead asked for
            summaries = self._summaries(chunk, with_bodies, fetched_ahead=ahead is not None)
            if not self._fetch_ahead:
                sent.clear()  # dropped by a change the loop's body made, as the rest sent with it
            source = _ChunkSource(self.session, summaries)
            if learned:
                self._send_ahead(index, list(window), sent, bodies_wanted, yielded)
            if bodies_wanted:
                source.prefetch()
                if learned:
                    self._bodies_ahead_for(index, list(window), sent, yielded)
            for summary in summaries:
                self.scanned += 1
                message = Message(summary, source, body_format=body_format)
                if not matches(self.filter, message):
                    continue
                yield message
                yielded += 1
                if self.filter.limit is not None and yielded >= self.filter.limit:
                    return  # not read to its end: an incremental loop keeps its old position
            self.scanned += len(chunk) - len(summaries)  # gone since the search
            bodies_wanted, learned = source.used_bodies, True
            source.release()  # a message the caller kept from this chunk must not keep the whole chunk
            summaries = []  # nor this frame while the next chunk is fetched
            window.popleft()
            window.extend(islice(chunks, 1))
            index += 1
        if self._after is not None:
            self.session.positions.save(*self._after)

    def _send_ahead(
        self, index: int, window: list[list[MessageKey]], sent: dict[int, bool], bodies: bool, yielded: int
    ) -> None:
        """Keep the summaries of the two chunks after this one on their way while this one is processed:
        the one after next is sent for a whole chunk before it is read, so a loop over a distant server
        waits for no round trip of its own."""
        for ahead in (1, 2):
            if not self._worth_fetching_ahead(window, ahead, yielded):
                return
            if index + ahead not in sent:
                self._sent_for(index + ahead, window[ahead], sent, bodies)

    def _bodies_ahead_for(
        self, index: int, window: list[list[MessageKey]], sent: dict[int, bool], yielded: int
    ) -> None:
        """Send for the next chunk's text bodies now (its summaries are read for that), to be read with them."""
        asked = sent.get(index + 1)
        if asked is None or not self._bodies_ahead or not self._worth_fetching_ahead(window, 1, yielded):
            return
        keys = window[1]
        self.session.call(lambda mailbox: cast(FetchesBodiesAhead, mailbox).bodies_ahead(keys, bodies=asked))

    def _sent_for(self, index: int, keys: list[MessageKey], sent: dict[int, bool], bodies: bool) -> None:
        """Send for chunk ``index``'s summaries ahead."""
        self.session.call(lambda mailbox: cast(FetchesAhead, mailbox).fetch_ahead(keys, bodies=bodies))
        sent[index] = bodies
        self._reconnects_when_sent = self.session.reconnects

    def _summaries(self, chunk: list[MessageKey], bodies: bool, *, fetched_ahead: bool) -> list[MessageSummary]:
        """The chunk's summaries: collected if they were sent for ahead and not dropped, else fetched now."""
        if fetched_ahead:
            collected = self.session.call(
                lambda mailbox: cast(FetchesAhead, mailbox).collect_ahead(chunk, bodies=bodies)
            )
            if collected is not None:
                return collected
            if self.session.reconnects == self._reconnects_when_sent:
                # dropped: the loop's body changed the mailbox (or ran a loop of its own); fetch each chunk when due
                self._fetch_ahead = self._bodies_ahead = False
        return self.session.call(lambda mailbox: mailbox.summaries(chunk, bodies=bodies))

    def _worth_fetching_ahead(self, window: list[list[MessageKey]], ahead: int, yielded: int) -> bool:
        """Whether to send for the chunk ``ahead`` places after this one (``window[0]``): not past the last,
        not across folders (a read in between would switch back), nor past a limit the chunks before it
        can fill."""
        limit = self.filter.limit
        return (
            self._fetch_ahead
            and ahead < len(window)
            and window[ahead][0].folder == window[0][0].folder
            and (limit is None or limit - yielded > sum(len(keys) for keys in window[:ahead]))
        )

    def _chunks(self) -> Iterator[list[MessageKey]]:
        """The keys, folder by folder: a small first chunk (the loop learns early whether bodies are
        read), then LOOP_CHUNK at a time."""
        for run in self.runs:
            start, size = 0, FIRST_CHUNK
            while start < len(run):
                yield run.keys(start, min(start + size, len(run)))
                start += size
                size = LOOP_CHUNK


class _ChunkSource(SessionSource):
    """A chunk's messages share this source. The first body one of them asks for brings the
    text bodies of the whole chunk in one go, where the mailbox can (:class:`FetchesBodies`);
    a loop that reads only headers never triggers it."""

    def __init__(self, session: Session, summaries: list[MessageSummary]) -> None:
        super().__init__(session)
        self._summaries = summaries
        self._cache: dict[tuple[MessageKey, str], bytes] | None = None
        #: Whether a body was asked for: the loop then asks for the next chunks' summaries with bodies.
        self.used_bodies = False

    def release(self) -> None:
        """Drop the chunk's summaries and unread bodies (the loop is past it); a message kept from it
        fetches what it reads on its own from then on."""
        self._summaries = []
        self._cache = {}

    def prefetch(self) -> None:
        """Fetch the chunk's text bodies now (the loop calls this when the last chunk's were read)."""
        if self._cache is None and self.session.can(FetchesBodies):
            summaries = self._summaries
            self._cache = self.session.call(lambda mailbox: cast(FetchesBodies, mailbox).bodies(summaries))

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        self.used_bodies = True
        self.prefetch()
        cached = self._cache.pop((key, part.section), None) if self._cache else None
        return super().part_content(key, part) if cached is None else cached


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
    since_last: str | None = None,
) -> MessageLoop:
    """The messages of ``session`` that match, lazily, in ``order``.

    ``since_last="NAME"`` makes it an incremental loop: only messages that arrived in the folder
    since the loop called NAME was last read to its end (the first run: every message there). The
    position is saved when the loop ends, so a bot that stops early or crashes sees those messages
    again (the bot runner's ledger makes that exactly once). Outlook sessions have it (Graph delta).

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
        require(resolved, Flags, "filtering on read status")
    if chosen.folder.upper() != "INBOX" or chosen.include_subfolders:
        require(resolved, Folders, f"looping over folder {chosen.folder!r}")
    if since_last is not None:
        check_one_line("since_last", since_last, hint="name the loop, e.g. since_last='invoice-bot'")
        if not since_last.strip():
            raise ConfigError("since_last", "is empty", hint="name the loop, e.g. since_last='invoice-bot'")
        if not chosen.covers_one_folder:
            raise ConfigError(
                "since_last", "follows one folder", hint="give one folder, without wildcards or include_subfolders"
            )
        require(
            resolved,
            Syncs,
            "an incremental loop (since_last)",
            hint="connect with protocol='outlook' (Microsoft Graph delta); nothing was sent to the server",
        )
    return MessageLoop(resolved, chosen, body_format, since_last=since_last)


def get_message(session: SessionRef, key: MessageKey | str, *, body_format: BodyFormat = "plain") -> Message:
    """One message by its key (as printed by ``postroom list``)."""
    resolved = resolve(session)
    wanted = resolved.check_key(MessageKey.parse(key))
    found = resolved.call(lambda mailbox: mailbox.summaries([wanted]))
    if not found:
        raise ProtocolError(f"message {wanted} is not there", hint="it was moved or deleted; list the folder again")
    return Message(found[0], SessionSource(resolved), body_format=body_format)


def matches(chosen: MessageFilter, message: Message) -> bool:
    """The client-side checks; a property is computed only when a condition needs it."""
    return (
        (chosen.status == "all" or chosen.matches_status(message.seen))
        and ((chosen.since_at is None and chosen.before_at is None) or chosen.matches_date(message.received_date))
        and (chosen.subject is None or chosen.matches_subject(message.subject))
        and (not chosen.senders or chosen.matches_sender(message.sender_text))
    )
