"""IMAP reading: structure-first summaries (pipelined, fetched ahead), bulk bodies, streamed parts.

One chunked ``UID FETCH`` brings flags, size, date, BODYSTRUCTURE and the few header
fields a loop needs; a body part is fetched only when asked for, and attachments stream
in ranges. Reading uses EXAMINE and ``BODY.PEEK``, so it never changes a flag.
"""

from __future__ import annotations

import array
import contextlib
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from postroom.errors import ConnectionLostError, ProtocolError
from postroom.filters import MessageFilter
from postroom.message.decode import StreamDecoder, decode_body
from postroom.message.keys import KeyRun, MessageKey
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.errors import server_text
from postroom.transports.imap.connection import (
    _SUMMARY_ITEMS,
    BULK_BODY_BUDGET,
    BULK_BODY_LIMIT,
    FIRST_SECTION_BYTES,
    MIN_STREAM_CHUNK,
    ImapConnection,
    _Ahead,
    _gone,
    _log,
    fetch_sets,
)
from postroom.transports.imap.fetch import FetchAhead, ResponseParts
from postroom.transports.imap.keys import ImapKey, UidRun
from postroom.transports.imap.response import items_of, parse_fetch
from postroom.transports.imap.search import search_criteria
from postroom.transports.imap.summary import summary_of_response

__all__ = ["ImapReading"]


class ImapReading(ImapConnection):
    """Reading a mailbox: search, summaries, bodies, parts."""

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        runs: list[KeyRun] = []
        for folder in self._folders_for(filter_):
            validity = self._select(folder, writable=False)
            runs.append(UidRun(folder, validity, self._search_uids(filter_)))
        return runs

    def _search_uids(self, filter_: MessageFilter) -> array.array[int]:
        """UIDs the server finds, newest (highest UID: latest to arrive in the folder) first when asked."""
        criteria = search_criteria(filter_)
        for attempt in (criteria, criteria.without_literal()):
            charset = ("CHARSET", attempt.charset) if attempt.charset else ()
            typ, data = self._uid("SEARCH", *charset, *attempt.args, literal=attempt.literal)
            if typ == "OK":
                found = sorted(
                    (int(token) for line in data if isinstance(line, bytes) for token in line.split()),
                    reverse=filter_.order == "newest",
                )
                return array.array("I", found)
            if attempt.literal is None or "BADCHARSET" not in server_text(data).upper():
                raise ProtocolError(f"SEARCH failed: {server_text(data)}")
            _log.info("server refused UTF-8 search (%s); filtering on the client", server_text(data))
        return array.array("I")

    def summaries(self, keys: list[ImapKey], *, bodies: bool = False) -> list[MessageSummary]:
        """Summaries of ``keys``; with ``bodies``, also the first bytes of section 1, in the same FETCH
        (where a text body usually is: a loop that reads bodies saves a round trip per chunk).

        Each summary is kept as it arrives: after a dropped connection the repeat fetches only the
        ones still missing, so a loop gets through a network that cuts every few hundred KB."""
        if not keys:
            return []
        missing = [key for key in keys if key not in self.salvaged]
        if missing:
            self._select_for(missing, writable=False)
            with self._keeping_progress():
                for _responses in self._fetch_many(
                    [key.uid for key in missing], _summary_request(bodies), self._keeper(missing)
                ):
                    pass
        return self._take(keys)

    def fetch_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> None:
        """Send the summaries request for ``keys`` now, to be collected by :meth:`collect_ahead`.

        Until then the server works while the caller does other things. A read-only command
        sent meanwhile reads these replies first and keeps them; a change to any mailbox
        (flags, move, delete, append) drops them, so a loop never yields a message from
        before a change its own body made.
        """
        if not keys:
            return
        self._select_for(keys, writable=False)
        client = self._require()  # replies of an earlier request sent ahead are read first
        self.salvaged.clear()  # what is left is from requests nobody will collect: not to be served later
        client.untagged_responses.clear()
        sets = fetch_sets([key.uid for key in keys])
        with self._in_flight(client):
            fetch = FetchAhead(client, sets, _summary_request(bodies), self._keeper(keys))
            self._ahead = _Ahead(keys, bodies, fetch)

    def collect_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> list[MessageSummary] | None:
        """The summaries sent for by :meth:`fetch_ahead` with these arguments, or None if they were dropped
        (what arrived before a dropped connection is kept for :meth:`summaries`)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        with self._keeping_progress():
            self._read_ahead(ahead)
        taken = self._take(ahead.keys)
        if ahead.keys != keys or ahead.bodies != bodies:
            return None
        return taken

    def _keeper(self, keys: list[ImapKey]) -> Callable[[ResponseParts], MessageSummary | None]:
        """The summary parser for ``keys``, keeping each summary in :attr:`salvaged` as it is parsed."""
        parse = _summary_parser(keys)
        by_uid = {key.uid: key for key in keys}
        salvaged = self.salvaged

        def keep(parts: ResponseParts) -> MessageSummary | None:
            summary = parse(parts)
            if summary is not None:
                key = by_uid.get(_uid_of(summary))
                if key is not None:  # the server may add responses nobody asked for
                    salvaged[key] = summary
            return summary

        return keep

    @contextlib.contextmanager
    def _keeping_progress(self) -> Iterator[None]:
        """A connection lost here says whether summaries arrived before it (the repeat then goes further)."""
        before = len(self.salvaged)
        try:
            yield
        except ConnectionLostError as lost:
            lost.progress = len(self.salvaged) > before
            raise

    def _take(self, keys: list[ImapKey]) -> list[MessageSummary]:
        """``keys``' summaries in their order (the server may answer in any order), taken out of the store;
        others stay (a FETCH sent ahead may have filed the next chunk's meanwhile)."""
        salvaged = self.salvaged
        return [summary for key in keys if (summary := salvaged.pop(key, None)) is not None]

    def _fetch_one(self, key: ImapKey, item: str) -> bytes:
        self._select_for([key], writable=False)
        typ, data = self._uid("FETCH", str(key.uid), f"(UID {item})")
        if typ != "OK":
            raise ProtocolError(f"FETCH failed: {server_text(data)}")
        for items in parse_fetch(data):
            for name, value in items.items():
                if name.startswith(("BODY[", "BINARY[")) and isinstance(value, bytes):
                    return bytes(value)
                if name.startswith(("BODY[", "BINARY[")) and value is None:
                    return b""
        raise _gone(key)

    def part_content(self, key: ImapKey, part: MimePart) -> bytes:
        data = self._fetch_one(key, f"BODY.PEEK[{part.fetch_section}]")
        decoder = StreamDecoder(part.encoding)
        return decoder.feed(data) + decoder.finish()

    def bodies(self, summaries: list[MessageSummary]) -> dict[tuple[MessageKey, str], bytes]:
        """The text bodies of a chunk: from the section 1 bytes that came with a summary when they are the
        whole part, else one FETCH per section for all of them, within :data:`BULK_BODY_BUDGET`."""
        found: dict[tuple[MessageKey, str], bytes] = {}
        wanted: dict[str, dict[int, tuple[MessageKey, str]]] = {}  # section -> uid -> (key, encoding)
        budget = BULK_BODY_BUDGET
        for summary in summaries:
            structure = summary.structure
            if structure is None:
                continue
            plain, html = structure.body_parts()
            part = plain or html
            if part is None or part.size > BULK_BODY_LIMIT:
                continue
            first = summary.body_start
            if first is not None and part.fetch_section == "1" and len(first) >= part.size:
                found[(summary.key, part.section)] = decode_body(first, part.encoding)  # came with the summary
            elif budget >= part.size:
                budget -= part.size
                wanted.setdefault(part.section, {})[_uid_of(summary)] = (summary.key, part.encoding)
        for section, by_uid in wanted.items():
            folder_keys = cast(list[ImapKey], [key for key, _encoding in by_uid.values()])
            for uid, data in self._sections(folder_keys, section or "1").items():
                key, encoding = by_uid[uid]
                found[(key, section)] = decode_body(data, encoding)
        self.salvaged_sections.clear()
        return found

    def _sections(self, keys: list[ImapKey], section: str) -> dict[int, bytes]:
        """UID -> the same section of many messages (one folder), in one FETCH per chunk, still encoded.
        Sections that arrived before a dropped connection are kept for the repeat, as summaries are."""
        if not keys:
            return {}
        kept = self.salvaged_sections
        missing = [key for key in keys if (key, section) not in kept]
        if missing:
            self._select_for(missing, writable=False)
            by_uid = {key.uid: key for key in missing}

            def keep(parts: ResponseParts) -> None:
                items = items_of(parts)
                uid = items.get("UID")
                body = next((v for n, v in items.items() if n.startswith("BODY[")), None)
                if isinstance(uid, bytes) and uid.isdigit() and int(uid) in by_uid:
                    kept[(by_uid[int(uid)], section)] = bytes(body) if isinstance(body, bytes) else b""

            before = len(kept)
            try:
                for _responses in self._fetch_many(sorted(by_uid), f"(UID BODY.PEEK[{section}])", keep):
                    pass
            except ConnectionLostError as lost:
                lost.progress = len(kept) > before
                raise
        return {key.uid: data for key in keys if (data := kept.get((key, section))) is not None}

    def stream_part(self, key: ImapKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        return self.stream_part_from(key, part, write, 0)

    def stream_part_from(self, key: ImapKey, part: MimePart, write: Callable[[bytes], object], skip: int) -> int:
        """The part's decoded content after its first ``skip`` bytes, in ranges (``BODY.PEEK[n]<offset.size>``).

        Where a dropped connection stopped this very part at ``skip``, it carries on from there; each
        drop halves the range (down to :data:`MIN_STREAM_CHUNK`), so a network that cuts every few
        hundred KB still brings a file of many MB."""
        section = part.fetch_section
        held = self._stream
        state = held[2] if held is not None and held[:2] == (key, section) and held[2].decoded == skip else None
        discard = 0
        if state is None:
            state, discard = _StreamState(StreamDecoder(part.encoding)), skip
        self._stream = (key, section, state)
        before = state.decoded

        def emit(data: bytes) -> None:
            nonlocal discard
            state.decoded += len(data)
            if discard:
                cut = min(discard, len(data))
                data, discard = data[cut:], discard - cut
            if data:
                write(data)

        try:
            while True:
                size = self.stream_chunk
                chunk = self._fetch_one(key, f"BODY.PEEK[{section}]<{state.offset}.{size}>")
                state.offset += len(chunk)
                emit(state.decoder.feed(chunk))
                if len(chunk) < size:
                    break
        except ConnectionLostError as lost:
            lost.progress = state.decoded > before
            self.stream_chunk = max(MIN_STREAM_CHUNK, self.stream_chunk // 2)
            raise
        emit(state.decoder.finish())
        self._stream = None
        return state.decoded - skip

    def header_block(self, key: ImapKey) -> bytes:
        return self._fetch_one(key, "BODY.PEEK[HEADER]")

    def raw(self, key: ImapKey) -> bytes:
        return self._fetch_one(key, "BODY.PEEK[]")


@dataclass
class _StreamState:
    """How far a part's download got: bytes of the part fetched, bytes decoded from them."""

    decoder: StreamDecoder
    offset: int = 0
    decoded: int = 0


#: The UID of a summary this transport made (its key is an ImapKey); in C, no call per message.
_uid_of: Callable[[MessageSummary], int] = operator.attrgetter("key.uid")


def _summary_parser(keys: list[ImapKey]) -> Callable[[ResponseParts], MessageSummary | None]:
    folder, validity = keys[0].folder, keys[0].uidvalidity
    return lambda parts: summary_of_response(parts, folder, validity)


def _summary_request(bodies: bool) -> str:
    return f"{_SUMMARY_ITEMS[:-1]} BODY.PEEK[1]<0.{FIRST_SECTION_BYTES}>)" if bodies else _SUMMARY_ITEMS
