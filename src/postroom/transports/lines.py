"""Reading one protocol line, and telling a cut connection from a line too long: the one rule IMAP's
responses, its pipelined FETCH and POP3's replies share."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

__all__ = ["MAX_LINE", "read_line"]

#: The longest line read before the connection counts as broken (memory stays bounded; a UID SEARCH
#: result for ~150,000 messages is one line).
MAX_LINE = 64 * 1024 * 1024


def read_line(reader: BinaryIO, *, cut: Callable[[str], Exception], too_long: Callable[[str], Exception]) -> bytes:
    """One line with its line end. A line without one is never handed on as shorter: the connection
    closed (``cut``), or the line exceeds :data:`MAX_LINE` and the rest is unread (``too_long``); either
    way the connection can carry no further command."""
    line = reader.readline(MAX_LINE + 1)
    if line.endswith(b"\n"):
        return line
    if len(line) > MAX_LINE:
        raise too_long(f"the server sent a line longer than {MAX_LINE >> 20} MiB")
    raise cut("the connection closed in the middle of a line" if line else "socket error: EOF")
