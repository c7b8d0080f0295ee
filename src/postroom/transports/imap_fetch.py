"""Bulk ``UID FETCH`` read straight off the connection, pipelined.

For the loop's hot path, imaplib's general response machinery (a regex per line,
every response filed in a dict, then popped again) costs more than parsing the
data. This reader sends the command for the next chunk before it reads the
current one (so the server works while the client parses), then reads lines and
literals from imaplib's own buffered socket file and hands each ``* n FETCH``
response to the tokenizer. Anything that is not a FETCH response (EXPUNGE,
EXISTS, OK notices) is skipped; BYE and a NO/BAD completion raise.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterator
from typing import BinaryIO, cast

from postroom.transports.imap_response import FetchItems, Literal, items_of

__all__ = ["pipelined_fetch"]

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")
_FETCH_START = re.compile(rb"^\* \d+ FETCH ", re.IGNORECASE)
_MAX_LINE = 64 * 1024 * 1024


def _send(client: imaplib.IMAP4, uid_set: str, items: str) -> bytes:
    tag: bytes = client._new_tag()
    client.send(tag + b" UID FETCH " + uid_set.encode("ascii") + b" " + items.encode("ascii") + b"\r\n")
    return tag


def _line(reader: BinaryIO) -> bytes:
    line = reader.readline(_MAX_LINE + 1)
    if not line:
        raise imaplib.IMAP4.abort("socket error: EOF")
    if not line.endswith(b"\n"):
        raise imaplib.IMAP4.abort(f"a response line longer than {_MAX_LINE} bytes")
    return line


def _read(client: imaplib.IMAP4, tag: bytes) -> Iterator[FetchItems]:
    reader = cast(BinaryIO, client.file)
    done = tag + b" "
    while True:
        line = _line(reader)
        if line.startswith(done):
            status = line[len(done) :].split(b" ", 1)[0].upper()
            if status != b"OK":
                raise imaplib.IMAP4.error(line[len(done) :].decode("utf-8", "replace").strip())
            return
        if line.startswith(b"* BYE"):
            raise imaplib.IMAP4.abort(line.decode("utf-8", "replace").strip())
        is_fetch = _FETCH_START.match(line) is not None
        parts: list[bytes | Literal] = [line[line.index(b"(") :]] if is_fetch else []
        while (match := _LITERAL_AT_END.search(line)) is not None:  # a literal, then the rest of the line
            size = int(match.group(1))
            data = reader.read(size)
            if len(data) != size:
                raise imaplib.IMAP4.abort("socket error: EOF inside a literal")
            line = _line(reader)
            if is_fetch:
                parts[-1] = parts[-1][: -(len(match.group(0)))]
                parts += [Literal(data), line]
        if is_fetch:
            yield items_of(parts)


def pipelined_fetch(client: imaplib.IMAP4, uid_sets: list[str], items: str) -> Iterator[list[FetchItems]]:
    """One list of FETCH responses per UID set, the next command always in flight.

    Consume the iterator to the end: a command left unread would desynchronise the connection.
    """
    if not uid_sets:
        return
    pending = _send(client, uid_sets[0], items)
    for index in range(len(uid_sets)):
        following = _send(client, uid_sets[index + 1], items) if index + 1 < len(uid_sets) else None
        yield list(_read(client, pending))
        if following is not None:
            pending = following
