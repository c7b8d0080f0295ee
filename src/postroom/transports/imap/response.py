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

__all__ = ["FetchItems", "Literal", "Value", "items_of", "parse_fetch", "tokenize"]


class Literal(bytes):
    """A string that came as an IMAP literal (``{n}``), not quoted."""


Value: TypeAlias = "bytes | list[Value] | None"
FetchItems: TypeAlias = dict[str, Value]

_FETCH_PREFIX = re.compile(rb"^(\d+) (?:FETCH )?(?=\()", re.IGNORECASE)  # imaplib drops the word FETCH


# One alternative per token kind, the most frequent first; findall skips the white space between
# tokens, and a token's first byte tells its kind. An atom may carry a bracketed section with
# spaces and parentheses inside: BODY[HEADER.FIELDS (SUBJECT FROM)]. (This order, the unrolled
# quoted string and the absence of groups make findall and the loop below take half the time.)
_TOKENS = re.compile(
    rb'[^ ()"\r\n\[]+(?:\[[^\]]*\][^ ()"\r\n]*|(?!\[))|\[[^\]]*\][^ ()"\r\n]*|[^ ()"\r\n]+'
    rb'|"[^"\\]*(?:\\.[^"\\]*)*"'
    rb"|[()]"
)
_ESCAPE = re.compile(rb"\\(.)", re.DOTALL)
_LITERAL_MARK = re.compile(rb"\{\d+\+?\}\r?\n?$")


def tokenize(parts: list[bytes | Literal]) -> list[Value]:
    """Parse a sequence of text and literals into values (the top level as a list)."""
    stack: list[list[Value]] = [[]]
    top = stack[0]
    for part in parts:
        if isinstance(part, Literal):
            top.append(part)
            continue
        if part.endswith((b"}", b"}\r\n")):
            part = _LITERAL_MARK.sub(b"", part)  # the literal itself follows as its own part
        for token in _TOKENS.findall(part):
            kind = token[0]
            if kind == 34:  # "
                text = token[1:-1]
                top.append(_ESCAPE.sub(rb"\1", text) if b"\\" in text else text)
            elif kind == 40:  # (
                top = []
                stack.append(top)
            elif kind == 41:  # )
                if len(stack) == 1:
                    raise ValueError("unbalanced ')' in IMAP response")
                done = stack.pop()
                top = stack[-1]
                top.append(done)
            else:
                top.append(None if len(token) == 3 and token.upper() == b"NIL" else token)
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


def items_of(parts: list[bytes | Literal]) -> FetchItems:
    """``{ITEM: value}`` from the text and literals of one FETCH response, starting at its ``(``."""
    values = tokenize(parts)
    if not values or not isinstance(values[0], list):
        raise ValueError("FETCH response without an item list")
    items = values[0]
    result: FetchItems = {}
    for name, value in zip(items[::2], items[1::2], strict=False):
        if isinstance(name, bytes):
            result[name.decode("ascii", "replace").upper()] = value
    return result


def parse_fetch(data: Iterable[bytes | tuple[bytes, bytes] | None]) -> Iterator[FetchItems]:
    """One ``{ITEM: value}`` mapping per FETCH response, item names upper-cased (``"UID"``, ``"FLAGS"``, ...)."""
    for parts in _segments(data):
        first = parts[0]
        match = _FETCH_PREFIX.match(first)
        assert match is not None
        parts[0] = first[match.end() :]
        yield items_of(parts)
