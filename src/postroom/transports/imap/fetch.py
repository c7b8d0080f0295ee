"""Bulk ``UID FETCH`` read straight off the connection, pipelined.

For the loop's hot path, imaplib's general response machinery (a regex per line,
every response filed in a dict, then popped again) costs more than parsing the
data. :func:`pipelined_fetch` sends the command for the next chunk before it
reads the current one (so the server works while the client parses);
:class:`FetchAhead` sends its commands before anyone wants their replies (so
the server works while the caller does something else). Both read lines and
literals from imaplib's own buffered socket file and hand each ``* n FETCH``
response to the tokenizer. Anything that is not a FETCH response (EXPUNGE,
EXISTS, OK notices) is skipped; BYE and a NO/BAD completion raise.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeAlias, TypeVar, cast

from postroom.transports.imap.response import Literal
from postroom.transports.lines import read_line

__all__ = ["FetchAhead", "ResponseParts", "pipelined_fetch", "read_fetch", "send_fetch"]

#: One ``* n FETCH`` response from its ``(``: text and literals in order (what the parsers take).
ResponseParts: TypeAlias = list[bytes | Literal]
T = TypeVar("T")

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")
_FETCH_START = re.compile(rb"^\* \d+ FETCH ", re.IGNORECASE)


def send_fetch(client: imaplib.IMAP4, uid_set: str, items: str) -> bytes:
    """Send ``UID FETCH uid_set items``; returns its tag (read the replies with :func:`read_fetch`)."""
    tag: bytes = client._new_tag()
    client.send(tag + b" UID FETCH " + uid_set.encode("ascii") + b" " + items.encode("ascii") + b"\r\n")
    return tag


def _line(reader: BinaryIO) -> bytes:
    return read_line(reader, cut=imaplib.IMAP4.abort, too_long=imaplib.IMAP4.abort)


def read_fetch(client: imaplib.IMAP4, tag: bytes, parse: Callable[[ResponseParts], T]) -> Iterator[T]:
    """Each FETCH response up to the completion of ``tag``, parsed by ``parse``.

    The server may run pipelined commands at once (RFC 3501 §5.5; Dovecot does): the responses read
    here may belong to a command sent later, and that command may even complete first. A completion
    for another tag in flight is kept in imaplib's ``tagged_commands`` for its own reader, so ``parse``
    must file each response by what it holds, not by which command's read found it.
    """
    reader = cast(BinaryIO, client.file)
    pending = client.tagged_commands
    early = pending.pop(tag, None)  # imaplib files every tag it hands out
    if early:  # completed while an earlier command's replies were read
        _check_completion(early[0])
        return
    done = tag + b" "
    while True:
        line = _line(reader)
        if line.startswith(done):
            _check_completion(line[len(done) :])
            return
        other = line.split(b" ", 1)[0]
        if other != b"*" and other in pending and pending[other] is None:
            pending[other] = [line[len(other) + 1 :]]  # a later command's completion: its reader checks it
            continue
        if line.startswith(b"* BYE"):
            raise imaplib.IMAP4.abort(line.decode("utf-8", "replace").strip())
        is_fetch = _FETCH_START.match(line) is not None
        parts: ResponseParts = [line[line.index(b"(") :]] if is_fetch else []
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
            yield parse(parts)


def _check_completion(status_line: bytes) -> None:
    """Raise unless a tagged completion (after its tag) is OK."""
    if status_line.split(b" ", 1)[0].upper() != b"OK":
        raise imaplib.IMAP4.error(status_line.decode("utf-8", "replace").strip())


def pipelined_fetch(
    client: imaplib.IMAP4, uid_sets: list[str], items: str, parse: Callable[[ResponseParts], T]
) -> Iterator[list[T]]:
    """One list of FETCH responses per UID set, the next command always in flight.

    Consume the iterator to the end: a command left unread would desynchronise the connection.
    """
    if not uid_sets:
        return
    pending = send_fetch(client, uid_sets[0], items)
    for index in range(len(uid_sets)):
        following = send_fetch(client, uid_sets[index + 1], items) if index + 1 < len(uid_sets) else None
        yield list(read_fetch(client, pending, parse))
        if following is not None:
            pending = following


class FetchAhead:
    """``UID FETCH`` commands sent now, their replies read later, in order, once: ``parse`` keeps what it
    reads (the replies may belong to any command in flight, see :func:`read_fetch`)."""

    def __init__(
        self, client: imaplib.IMAP4, uid_sets: list[str], items: str, parse: Callable[[ResponseParts], None]
    ) -> None:
        self._tags = [send_fetch(client, uid_set, items) for uid_set in uid_sets]
        self._parse = parse

    def read(self, client: imaplib.IMAP4) -> None:
        """Read every reply of the commands off the connection, handing each FETCH response to ``parse``."""
        for tag in self._tags:
            for _kept in read_fetch(client, tag, self._parse):
                pass
