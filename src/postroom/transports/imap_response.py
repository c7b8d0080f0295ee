"""Parsing IMAP FETCH responses as ``imaplib`` hands them over.

``imaplib`` returns a FETCH response as a list whose items are either a line
(``bytes``) or a ``(line-up-to-literal, literal-bytes)`` tuple, the rest of the
line following as the next item. :func:`parse_fetch` rebuilds the token stream
and yields one ``{item-name: value}`` mapping per message:

- atoms and numbers are ``bytes`` (``b"UID"``, ``b"42"``), ``NIL`` is ``None``;
- quoted strings and literals are ``bytes`` too (a :class:`Literal` for literals);
- parenthesised lists are Python lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TypeAlias

__all__ = ["FetchItems", "Literal", "Value", "parse_fetch", "tokenize"]


class Literal(bytes):
    """A string that came as an IMAP literal (``{n}``), not quoted."""


Value: TypeAlias = "bytes | list[Value] | None"
FetchItems: TypeAlias = dict[str, Value]

_FETCH_PREFIX = re.compile(rb"^(\d+) (?:FETCH )?(?=\()", re.IGNORECASE)  # imaplib drops the word FETCH
_LITERAL_TAIL = re.compile(rb"\{(\d+)\+?\}$")
_ATOM_END = frozenset(b' ()"{\r\n')


class _Stream:
    """Text segments interleaved with literals."""

    def __init__(self, parts: list[bytes | Literal]) -> None:
        self.parts = parts
        self.index = 0
        self.pos = 0

    def current(self) -> bytes | None:
        while self.index < len(self.parts):
            part = self.parts[self.index]
            if isinstance(part, Literal):
                return part
            if self.pos < len(part):
                return part
            self.index += 1
            self.pos = 0
        return None


def tokenize(parts: list[bytes | Literal]) -> list[Value]:
    """Parse a sequence of text and literals into values (the top level as a list)."""
    stream = _Stream(parts)
    stack: list[list[Value]] = [[]]
    while (part := stream.current()) is not None:
        if isinstance(part, Literal):
            stack[-1].append(part)
            stream.index += 1
            stream.pos = 0
            continue
        pos = stream.pos
        char = part[pos]
        if char == 0x20:  # space
            stream.pos += 1
        elif char == 0x28:  # (
            stack.append([])
            stream.pos += 1
        elif char == 0x29:  # )
            if len(stack) == 1:
                raise ValueError("unbalanced ')' in IMAP response")
            done = stack.pop()
            stack[-1].append(done)
            stream.pos += 1
        elif char == 0x22:  # quoted string
            value, stream.pos = _quoted(part, pos)
            stack[-1].append(value)
        elif char == 0x7B and _LITERAL_TAIL.match(part, pos):  # {n} followed by the literal
            stream.pos = len(part)
        elif char in (0x0D, 0x0A):
            stream.pos += 1
        else:
            end = _atom_end(part, pos)
            atom = part[pos:end]
            stack[-1].append(None if atom.upper() == b"NIL" else atom)
            stream.pos = end
    if len(stack) != 1:
        raise ValueError("unbalanced '(' in IMAP response")
    return stack[0]


def _quoted(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    i = pos + 1
    while i < len(data):
        char = data[i]
        if char == 0x5C and i + 1 < len(data):  # backslash escape
            out.append(data[i + 1])
            i += 2
        elif char == 0x22:
            return bytes(out), i + 1
        else:
            out.append(char)
            i += 1
    raise ValueError("unterminated quoted string in IMAP response")


def _atom_end(data: bytes, pos: int) -> int:
    """End of an atom; ``[...]`` (e.g. ``BODY[HEADER.FIELDS (A B)]``) and ``<n>`` are part of it."""
    i = pos
    depth = 0
    while i < len(data):
        char = data[i]
        if char == 0x5B:  # [
            depth += 1
        elif char == 0x5D:  # ]
            depth -= 1
        elif depth == 0 and char in _ATOM_END:
            break
        i += 1
    return i


def _segments(data: Iterable[bytes | tuple[bytes, bytes] | None]) -> Iterator[list[bytes | Literal]]:
    """Group imaplib's flat FETCH data into one segment list per ``* n FETCH`` response."""
    current: list[bytes | Literal] | None = None
    for item in data:
        if item is None:
            continue
        head = item[0] if isinstance(item, tuple) else item
        if _FETCH_PREFIX.match(head):
            if current is not None:
                yield current
            current = []
        if current is None:
            continue  # stray continuation (e.g. a closing paren) of nothing
        if isinstance(item, tuple):
            current.append(item[0])
            current.append(Literal(item[1]))
        else:
            current.append(item)
    if current is not None:
        yield current


def parse_fetch(data: Iterable[bytes | tuple[bytes, bytes] | None]) -> Iterator[FetchItems]:
    """One ``{ITEM: value}`` mapping per FETCH response, item names upper-cased (``"UID"``, ``"FLAGS"``, ...)."""
    for parts in _segments(data):
        first = parts[0]
        match = _FETCH_PREFIX.match(first)
        assert match is not None
        parts[0] = first[match.end() :]
        values = tokenize(parts)
        if not values or not isinstance(values[0], list):
            raise ValueError("FETCH response without an item list")
        items = values[0]
        result: FetchItems = {}
        for name, value in zip(items[::2], items[1::2], strict=False):
            if isinstance(name, bytes):
                result[name.decode("ascii", "replace").upper()] = value
        yield result
