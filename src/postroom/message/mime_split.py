"""The MIME structure and part contents of raw mail without the stdlib's feed parser, for ordinary mail.

A POP3 loop, an ``.eml`` file and the in-memory mailbox have only a message's bytes. The stdlib's parser
reads them line by line in Python: at 30 KB a message that is most of a POP3 loop's client CPU. Most mail is
simple (one part; text and HTML; text with attachments), and for it the structure is a few header fields and
the positions of the boundary lines, which ``bytes.find`` gives.

:func:`split_raw` reads exactly what the stdlib's ``compat32`` parser (:func:`~postroom.message.structure.
parse_raw`) reads, or returns None and the caller parses with the stdlib. It returns None for anything the
two could read apart: a lone CR or mixed line endings, a header line that is not a plain field, 8-bit bytes in
a MIME field, a missing or repeated boundary, an attached message or a digest, nesting beyond a few levels.
Parameters go through the same steps as ``Message.get_params`` (the stdlib's own RFC 2231 and unquoting
functions). ``tests/test_mime_split.py`` checks the two agree on every message this reads: the bench's mix,
the suite's samples and thousands of fuzzed ones.
"""

from __future__ import annotations

import email.utils
import itertools
import re
from dataclasses import dataclass

from postroom.message.decode import decode_body
from postroom.message.structure import ASCII_ENCODINGS, MimePart, decode_params

__all__ = ["SplitMessage", "split_raw"]

#: Deeper than this, the stdlib reads it (mail nests two or three levels).
MAX_DEPTH = 8
#: A header field's first line: a name (printable ASCII but the colon) and its colon, nothing between.
_FIELD_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
#: The fields the structure is made of.
_MIME_FIELDS = (b"content-type", b"content-disposition", b"content-transfer-encoding", b"content-id")


class _NotPlainError(Exception):
    """The message is outside what this module reads as the stdlib does."""


@dataclass(frozen=True, slots=True)
class SplitMessage:
    """A message's structure, and where each leaf part's content lies in its bytes."""

    raw: bytes
    structure: MimePart
    #: Section -> (start, end) of the leaf's content in :attr:`raw`, transfer encoding not undone.
    leaves: dict[str, tuple[int, int]]

    def content(self, part: MimePart) -> bytes | None:
        """The content of ``part`` with its transfer encoding undone, as ``content_of`` gives it; None where
        only the stdlib can say (a section that is no leaf here, 8-bit bytes in base64 or quoted-printable)."""
        where = self.leaves.get(part.section)
        if where is None:
            return None
        data = self.raw[where[0] : where[1]]
        if part.encoding not in ASCII_ENCODINGS:  # as content_of reads them
            return data
        if not data.isascii():  # the stdlib decodes these by the part's charset first
            return None
        return decode_body(data, part.encoding)


def split_raw(raw: bytes) -> SplitMessage | None:
    """``raw``'s structure and leaf positions, or None when the stdlib's parser must read it."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\r") != crlf or (crlf and raw.count(b"\n") != crlf) or raw.startswith(b"From "):
        return None  # a lone CR, or CRLF and LF mixed: the stdlib's line splitting is not worth copying
    newline = b"\r\n" if crlf else b"\n"
    if raw.startswith(newline):
        return None  # no header at all (the stdlib path guesses where one ends)
    leaves: dict[str, tuple[int, int]] = {}
    try:
        structure = _Reader(raw, newline, leaves).part(0, len(raw), "", depth=0, trim=False)
    except Exception:  # _NotPlainError, or the stdlib's parameter code failing on hostile input: the stdlib reads it
        return None
    return SplitMessage(raw, structure, leaves)


class _Reader:
    def __init__(self, raw: bytes, newline: bytes, leaves: dict[str, tuple[int, int]]) -> None:
        self.raw = raw
        self.newline = newline
        self.leaves = leaves

    def part(self, start: int, end: int, section: str, *, depth: int, trim: bool) -> MimePart:
        """The part held by ``raw[start:end]``; ``trim``: the line ending before the next boundary is not its."""
        if depth > MAX_DEPTH:
            raise _NotPlainError
        fields, body = self._header(start, end)
        content_type_field = fields.get(b"content-type")
        content_type = "text/plain" if content_type_field is None else _first_value(content_type_field).lower()
        if content_type.count("/") != 1:
            content_type = "text/plain"  # as get_content_type() reads a malformed type
        main = content_type.partition("/")[0]
        if main == "message" or content_type == "multipart/digest":
            raise _NotPlainError  # attached messages are parsed again inside; a digest's parts default to messages
        params = _get_params(content_type_field)
        disposition_field = fields.get(b"content-disposition")
        disposition: str | None = None
        disposition_params: dict[str, str] = {}
        if disposition_field is not None:
            disposition = _first_value(disposition_field).lower() or None
            disposition_params = decode_params(_param_pairs(_get_params(disposition_field)))
        children: tuple[MimePart, ...] = ()
        if main == "multipart":
            children = self._children(body, end, _boundary(params), section, depth)
        else:
            stop = end
            if trim and stop > body and self.raw.endswith(self.newline, body, stop):
                stop -= len(self.newline)
            self.leaves[section] = (body, stop)
        encoding = fields.get(b"content-transfer-encoding")
        content_id = fields.get(b"content-id")
        return MimePart(
            section=section,
            content_type=content_type,
            params=decode_params(_param_pairs(params)),
            disposition=disposition,
            disposition_params=disposition_params,
            encoding=(encoding or "7bit").strip().lower(),
            content_id=content_id or None,
            children=children,
        )

    def _children(self, start: int, end: int, boundary: str | None, section: str, depth: int) -> tuple[MimePart, ...]:
        if not boundary or not boundary.isascii():
            raise _NotPlainError  # no boundary: the stdlib reads the body as text, with a defect
        lines = self._boundary_lines(start, end, b"--" + boundary.encode("ascii"))
        if len(lines) < 2 or lines[0][2] or not lines[-1][2]:
            raise _NotPlainError  # no part, or no close (the lines end at the first close)
        prefix = f"{section}." if section else ""
        children = []
        for number, ((_s, part_start, _c), (next_start, _e, _close)) in enumerate(itertools.pairwise(lines), start=1):
            if part_start == next_start:
                raise _NotPlainError  # two boundary lines in a row: the stdlib skips the second
            children.append(self.part(part_start, next_start, f"{prefix}{number}", depth=depth + 1, trim=True))
        return tuple(children)

    def _boundary_lines(self, start: int, end: int, marker: bytes) -> list[tuple[int, int, bool]]:
        """The boundary lines in ``raw[start:end]`` as (line start, next line's start, is the close), each a
        whole line ``--boundary[--][ \\t]*`` as the stdlib's boundary pattern matches it."""
        raw, newline = self.raw, self.newline
        found: list[tuple[int, int, bool]] = []
        at = raw.find(marker, start, end)
        while at >= 0:
            if at == start or raw[at - 1] == 0x0A:
                after = at + len(marker)
                close = raw.startswith(b"--", after, end)
                position = after + 2 if close else after
                while position < end and raw[position] in (0x20, 0x09):
                    position += 1
                if position == end:
                    found.append((at, end, close))
                elif raw.startswith(newline, position, end):
                    found.append((at, position + len(newline), close))
                if found and found[-1][2]:
                    return found  # what follows the close is the epilogue
            at = raw.find(marker, at + 1, end)
        return found

    def _header(self, start: int, end: int) -> tuple[dict[bytes, str], int]:
        """The MIME fields of the header at ``start`` (compat32's values: the first of each name, folds kept)
        and where the body starts."""
        raw, newline = self.raw, self.newline
        if raw.startswith(newline, start, end):
            return {}, start + len(newline)
        blank = raw.find(newline + newline, start, end)
        if blank < 0:
            raise _NotPlainError  # a part that is all header, or a header line the stdlib takes for the body
        fields: dict[bytes, str] = {}
        name: bytes | None = None
        value: list[bytes] = []
        for line in raw[start : blank + len(newline)].split(newline)[:-1]:
            if line[:1] in (b" ", b"\t"):
                if name is None and not value:
                    raise _NotPlainError  # the first line a continuation
                value.append(line)
                continue
            if not _FIELD_LINE.match(line):
                raise _NotPlainError  # the stdlib ends the header there
            self._keep(fields, name, value)
            colon = line.index(b":")
            name = line[:colon].lower()
            value = [line[colon + 1 :].lstrip(b" \t")]
        self._keep(fields, name, value)
        return fields, blank + 2 * len(newline)

    def _keep(self, fields: dict[bytes, str], name: bytes | None, value: list[bytes]) -> None:
        if name is None or name not in _MIME_FIELDS or name in fields:
            return
        text = self.newline.join(value).rstrip(b"\r\n")
        if not text.isascii():
            raise _NotPlainError  # the stdlib hands 8-bit values back as Header objects
        fields[name] = text.decode("ascii")


def _first_value(field: str) -> str:
    """The field's value before its parameters (the stdlib's ``_splitparam``)."""
    return field.partition(";")[0].strip()


_Value = str | tuple[str | None, str | None, str]


def _get_params(field: str | None) -> list[tuple[str, _Value]]:
    """``Message.get_params(unquote=True)`` of a field's value: the value itself first, then its parameters,
    RFC 2231 ones as (charset, language, text)."""
    if field is None:
        return []
    pairs: list[tuple[str, str]] = []
    for piece in _split_params(field):
        name, equals, value = piece.partition("=")
        pairs.append((name.strip(), value.strip()) if equals else (piece.strip(), ""))
    out: list[tuple[str, _Value]] = []
    for name, decoded in email.utils.decode_params(pairs):
        if isinstance(decoded, tuple):
            out.append((name, (decoded[0], decoded[1], email.utils.unquote(decoded[2]))))
        else:
            out.append((name, email.utils.unquote(decoded)))
    return out


def _param_pairs(params: list[tuple[str, _Value]]) -> list[tuple[str, str]]:
    """The parameters as :func:`~postroom.message.structure.header_params` gives them (RFC 2231 collapsed)."""
    return [
        (name, str(email.utils.collapse_rfc2231_value(value) if isinstance(value, tuple) else value))
        for name, value in params[1:]
    ]


def _boundary(params: list[tuple[str, _Value]]) -> str | None:
    """``Message.get_boundary()``: the first ``boundary`` (the type itself is looked at too), collapsed."""
    for name, value in params:
        if name.lower() == "boundary":
            return str(email.utils.collapse_rfc2231_value(value)).rstrip()
    return None


def _split_params(field: str) -> list[str]:
    """The stdlib's ``_parseparam``: ``;``-separated pieces (not inside quotes), ``name=value`` stripped, names
    lower-cased."""
    rest = ";" + field
    pieces = []
    while rest[:1] == ";":
        rest = rest[1:]
        end = rest.find(";")
        while end > 0 and (rest.count('"', 0, end) - rest.count('\\"', 0, end)) % 2:
            end = rest.find(";", end + 1)
        if end < 0:
            end = len(rest)
        piece = rest[:end]
        if "=" in piece:
            at = piece.index("=")
            piece = piece[:at].strip().lower() + "=" + piece[at + 1 :].strip()
        pieces.append(piece.strip())
        rest = rest[end:]
    return pieces
