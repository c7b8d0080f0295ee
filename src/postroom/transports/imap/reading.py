"""IMAP reading: structure-first summaries (pipelined, fetched ahead), bulk bodies, streamed parts.

One chunked ``UID FETCH`` brings flags, size, date, BODYSTRUCTURE and the few header
fields a loop needs; a body part is fetched only when asked for, and attachments stream
in ranges. Reading uses EXAMINE and ``BODY.PEEK``, so it never changes a flag.
"""

from __future__ import annotations

import array
import operator
from collections.abc import Callable, Iterable
from typing import cast

from postroom.errors import ProtocolError
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
    STREAM_CHUNK,
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
        (where a text body usually is: a loop that reads bodies saves a round trip per chunk)."""
        if not keys:
            return []
        self._select_for(keys, writable=False)
        chunks = self._fetch_many([key.uid for key in keys], _summary_request(bodies), _summary_parser(keys))
        return self._summaries_of(keys, (summary for chunk in chunks for summary in chunk))

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
        client = self._require()
        client.untagged_responses.clear()
        sets = fetch_sets([key.uid for key in keys])
        with self._in_flight(client):
            fetch = FetchAhead(client, sets, _summary_request(bodies), _summary_parser(keys))
            self._ahead = _Ahead(keys, bodies, fetch)

    def collect_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> list[MessageSummary] | None:
        """The summaries sent for by :meth:`fetch_ahead` with these arguments, or None if they were dropped."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        responses = self._read_ahead(ahead)
        if ahead.keys != keys or ahead.bodies != bodies:
            return None
        return self._summaries_of(keys, responses)

    @staticmethod
    def _summaries_of(keys: list[ImapKey], summaries: Iterable[MessageSummary | None]) -> list[MessageSummary]:
        """``keys``' summaries in their order (the server may answer in any order, or add others)."""
        wanted = {key.uid for key in keys}
        found: dict[int, MessageSummary] = {}
        for summary in summaries:
            if summary is not None:
                uid = _uid_of(summary)
                if uid in wanted:
                    found[uid] = summary
        return [found[key.uid] for key in keys if key.uid in found]

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
        return found

    def _sections(self, keys: list[ImapKey], section: str) -> dict[int, bytes]:
        """UID -> the same section of many messages (one folder), in one FETCH per chunk, still encoded."""
        if not keys:
            return {}
        self._select_for(keys, writable=False)
        uids = {key.uid for key in keys}
        found: dict[int, bytes] = {}
        for responses in self._fetch_many(sorted(uids), f"(UID BODY.PEEK[{section}])", items_of):
            for items in responses:
                uid = items.get("UID")
                body = next((v for n, v in items.items() if n.startswith("BODY[")), None)
                if isinstance(uid, bytes) and uid.isdigit() and int(uid) in uids:
                    found[int(uid)] = bytes(body) if isinstance(body, bytes) else b""
        return found

    def stream_part(self, key: ImapKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        decoder = StreamDecoder(part.encoding)
        offset = total = 0
        while True:
            chunk = self._fetch_one(key, f"BODY.PEEK[{part.fetch_section}]<{offset}.{STREAM_CHUNK}>")
            decoded = decoder.feed(chunk)
            write(decoded)
            total += len(decoded)
            offset += len(chunk)
            if len(chunk) < STREAM_CHUNK:
                break
        tail = decoder.finish()
        write(tail)
        return total + len(tail)

    def header_block(self, key: ImapKey) -> bytes:
        return self._fetch_one(key, "BODY.PEEK[HEADER]")

    def raw(self, key: ImapKey) -> bytes:
        return self._fetch_one(key, "BODY.PEEK[]")


#: The UID of a summary this transport made (its key is an ImapKey); in C, no call per message.
_uid_of: Callable[[MessageSummary], int] = operator.attrgetter("key.uid")


def _summary_parser(keys: list[ImapKey]) -> Callable[[ResponseParts], MessageSummary | None]:
    folder, validity = keys[0].folder, keys[0].uidvalidity
    return lambda parts: summary_of_response(parts, folder, validity)


def _summary_request(bodies: bool) -> str:
    return f"{_SUMMARY_ITEMS[:-1]} BODY.PEEK[1]<0.{FIRST_SECTION_BYTES}>)" if bodies else _SUMMARY_ITEMS
