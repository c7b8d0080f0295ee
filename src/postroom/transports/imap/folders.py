"""IMAP folder names: LIST responses, modified UTF-7, and the user's ``/``-separated paths."""

from __future__ import annotations

import re
from collections.abc import Sequence

from postroom.transports.contract import Folder
from postroom.transports.imap.response import Literal, tokenize
from postroom.transports.imap.utf7 import decode_mailbox

__all__ = ["normal_inbox", "parse_list", "user_path"]


def parse_list(lines: Sequence[object], user_delimiter: str) -> list[Folder]:
    """LIST responses → folders named with ``/`` between levels, decoded from modified UTF-7."""
    folders = []
    parts: list[bytes | Literal] = []
    for item in lines:
        if isinstance(item, tuple):  # name sent as a literal
            parts = [item[0], Literal(item[1])]
            continue
        if not isinstance(item, bytes):
            continue
        if parts:
            parts.append(item)
            values = tokenize(parts)
            parts = []
        else:
            values = tokenize([item])
        if len(values) < 3:
            continue
        flags_value, delimiter_value, name_value = values[0], values[1], values[2]
        flags = (
            tuple(f.decode("ascii", "replace").upper() for f in flags_value if isinstance(f, bytes))
            if isinstance(flags_value, list)
            else ()
        )
        delimiter = delimiter_value.decode() if isinstance(delimiter_value, bytes) else None
        raw_name = name_value.decode("utf-8", "replace") if isinstance(name_value, bytes) else ""
        name = decode_mailbox(raw_name)
        if delimiter and delimiter != user_delimiter:
            name = name.replace(delimiter, user_delimiter)
        folders.append(Folder(name=normal_inbox(name), delimiter=delimiter, flags=flags))
    return folders


def normal_inbox(name: str) -> str:
    head, sep, rest = name.partition("/")
    return f"INBOX{sep}{rest}" if head.upper() == "INBOX" else name


def user_path(folder: str) -> str:
    """A folder path as keys carry it: ``/`` between levels, ``INBOX`` upper-case."""
    return normal_inbox("/".join(p for p in folder.strip().split("/") if p))


def folder_pattern(pattern: str) -> re.Pattern[str]:
    """A LIST pattern (``*`` any depth, ``%`` one level) as a case-insensitive regular expression over
    ``/``-separated paths, for servers that list their folders without patterns (EWS, Graph)."""
    body = "".join("[^/]*" if ch == "%" else ".*" if ch == "*" else re.escape(ch) for ch in user_path(pattern))
    return re.compile(body + r"\Z", re.IGNORECASE)
