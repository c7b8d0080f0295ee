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


_TOKEN = re.compile(
    rb"[ \r\n]+"  # white space
    rb"|(?P<open>\()|(?P<close>\))"
    rb'|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|\{(?P<literal>\d+)\+?\}\r?\n?$"  # announces the literal that follows as its own part
    rb'|(?P<atom>[^ ()"{\r\n\[\]]*(?:\[[^\]]*\][^ ()"{\r\n]*)?)',
    re.DOTALL,
)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)


def tokenize(parts: list[bytes | Literal]) -> list[Value]:
    """Parse a sequence of text and literals into values (the top level as a list)."""
    stack: list[list[Value]] = [[]]
    top = stack[-1]
    for part in parts:
        if isinstance(part, Literal):
            top.append(part)
            continue
        pos, end = 0, len(part)
        while pos < end:
            match = _TOKEN.match(part, pos)
            if match is None or match.end() == pos:
                raise ValueError(f"unexpected IMAP response text at {part[pos : pos + 20]!r}")
            pos = match.end()
            kind = match.lastgroup
            if kind is None or kind == "literal":
                continue
            if kind == "open":
                stack.append([])
                top = stack[-1]
            elif kind == "close":
                if len(stack) == 1:
                    raise ValueError("unbalanced ')' in IMAP response")
                done = stack.pop()
                top = stack[-1]
                top.append(done)
            elif kind == "quoted":
                value = match.group("quoted")
                top.append(_ESCAPE.sub(rb"\1", value) if b"\\" in value else value)
            else:
                atom = match.group("atom")
                top.append(None if atom.upper() == b"NIL" else atom)
    if len(stack) != 1:
        raise ValueError("unbalanced '(' in IMAP response")
    return stack[0]


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
