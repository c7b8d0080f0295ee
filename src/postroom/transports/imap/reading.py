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
from postroom.transports.imap.response import parse_fetch
from postroom.transports.imap.search import search_criteria
from postroom.transports.imap.summary import summary_or_items

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
                for _responses in self._fetch_many([key.uid for key in missing], _summary_request(bodies), self._file):
                    pass
        return self._take(keys)

    def fetch_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> None:
        """Send the summaries request for ``keys`` now, to be collected by :meth:`collect_ahead`.

        Until then the server works while the caller does other things; several requests may be on their
        way at once. A read-only command sent meanwhile reads their replies first and keeps them; a change
        to any mailbox (flags, move, delete, append) drops them, so a loop never yields a message from
        before a change its own body made.
        """
        if not keys:
            return
        self._select_for(keys, writable=False)
        self._prune_salvaged()
        sets, request = fetch_sets([key.uid for key in keys]), _summary_request(bodies)
        self._send_ahead(lambda client: _Ahead(keys, FetchAhead(client, sets, request, self._file)))
        self._collectable.append((keys, bodies))

    def collect_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> list[MessageSummary] | None:
        """The summaries sent for by :meth:`fetch_ahead` with these arguments, or None if they were dropped
        (what arrived before a dropped connection is kept for :meth:`summaries`)."""
        if not self._claim_collectable(keys, bodies):
            return None
        self._read_summaries_of(keys)
        return self._take(keys)

    def bodies_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> None:
        """Read the summaries sent ahead for ``keys`` (kept for :meth:`collect_ahead`) and send for their text
        bodies now: :meth:`bodies` then reads the replies, and a loop that keeps two chunks on their way
        waits for no round trip of its own, however far away the server is."""
        if (keys, bodies) not in self._collectable:
            return
        self._read_summaries_of(keys)
        salvaged = self.salvaged
        summaries = [summary for key in keys if (summary := salvaged.get(key)) is not None]
        _from_summaries, wanted = _body_plan(summaries)
        for fetched, by_uid in wanted.items():
            section_keys = cast(list[ImapKey], [key for key, _encoding, _section in by_uid.values()])
            sets = fetch_sets(sorted(by_uid))
            request = f"(UID BODY.PEEK[{fetched}])"
            self._send_ahead(
                lambda client, s=sets, r=request, ks=section_keys, n=fetched: _Ahead(  # type: ignore[misc]
                    ks, FetchAhead(client, s, r, self._file), section=n
                )
            )

    def _claim_collectable(self, keys: list[ImapKey], bodies: bool) -> bool:
        """Whether summaries of ``keys`` were sent ahead with ``bodies`` (and not dropped since); neither they
        nor any sent before them are collectable after this."""
        collectable = self._collectable
        if (keys, bodies) not in collectable:
            return False
        del collectable[: collectable.index((keys, bodies)) + 1]
        return True

    def _read_summaries_of(self, keys: list[ImapKey]) -> None:
        """Read the replies to the summaries request sent ahead for ``keys`` if they are still on their way
        (and those sent before it), leaving later requests on theirs."""
        request = next((ahead for ahead in self._ahead if ahead.section is None and ahead.keys == keys), None)
        if request is not None:
            with self._keeping_progress():
                self._read_ahead(request)

    def _prune_salvaged(self) -> None:
        """Drop kept summaries nobody will collect (a loop left early, or a request given up), keeping those
        of requests still collectable."""
        wanted = {key for keys, _bodies in self._collectable for key in keys}
        salvaged = self.salvaged
        for key in [key for key in salvaged if key not in wanted]:
            del salvaged[key]

    def _file(self, parts: ResponseParts) -> None:
        """Keep one FETCH response by what it holds, whichever command's reply it came in: a summary in
        :attr:`salvaged`, a body section in :attr:`salvaged_sections`; flags the server reports on its own
        are left out. Dovecot runs pipelined FETCH commands at once, so the replies to one may come before
        the completion of the one sent before it: filing by command would lose them."""
        selected = self._selected
        if selected is None:
            return
        folder, validity = selected[0], self._uidvalidity
        found = summary_or_items(parts, folder, validity)
        if isinstance(found, MessageSummary):
            self.salvaged[cast(ImapKey, found.key)] = found
            return
        uid = found.get("UID")
        if not isinstance(uid, bytes) or not uid.isdigit():
            return
        for name, value in found.items():
            if name.startswith("BODY[") and not name.startswith("BODY[HEADER"):
                section = name[5 : name.index("]")] if "]" in name else name[5:]
                data = bytes(value) if isinstance(value, bytes) else b""
                self.salvaged_sections[(ImapKey(folder, validity, int(uid)), section)] = data

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
        whole part, else one FETCH per section for all of them (sent already by :meth:`bodies_ahead`, or
        now), within :data:`BULK_BODY_BUDGET`."""
        found: dict[tuple[MessageKey, str], bytes] = {}
        from_summaries, wanted = _body_plan(summaries)
        for summary, part in from_summaries:
            found[(summary.key, part.section)] = decode_body(cast(bytes, summary.body_start), part.encoding)
        last_sections = next((ahead for ahead in reversed(self._ahead) if ahead.section is not None), None)
        if last_sections is not None:  # sent by bodies_ahead: read them, leaving later requests on their way
            self._read_ahead(last_sections)
        for fetched, by_uid in wanted.items():
            folder_keys = cast(list[ImapKey], [key for key, _encoding, _section in by_uid.values()])
            for uid, data in self._sections(folder_keys, fetched).items():
                key, encoding, section = by_uid[uid]
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
            before = len(kept)
            try:
                for _responses in self._fetch_many(
                    sorted(key.uid for key in missing), f"(UID BODY.PEEK[{section}])", self._file
                ):
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


def _body_plan(
    summaries: list[MessageSummary],
) -> tuple[list[tuple[MessageSummary, MimePart]], dict[str, dict[int, tuple[MessageKey, str, str]]]]:
    """Where each summary's text body comes from: the section 1 bytes that came with it (when they are the
    whole part), or a FETCH of the section (``fetched section -> uid -> (key, encoding, part's section)``:
    a single-part message's body and a multipart's first part are both ``BODY[1]``, one FETCH), within
    :data:`BULK_BODY_BUDGET`; bodies over :data:`BULK_BODY_LIMIT` are left to be fetched when read."""
    from_summaries: list[tuple[MessageSummary, MimePart]] = []
    wanted: dict[str, dict[int, tuple[MessageKey, str, str]]] = {}
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
            from_summaries.append((summary, part))
        elif budget >= part.size:
            budget -= part.size
            wanted.setdefault(part.fetch_section, {})[_uid_of(summary)] = (summary.key, part.encoding, part.section)
    return from_summaries, wanted


def _summary_request(bodies: bool) -> str:
    return f"{_SUMMARY_ITEMS[:-1]} BODY.PEEK[1]<0.{FIRST_SECTION_BYTES}>)" if bodies else _SUMMARY_ITEMS
