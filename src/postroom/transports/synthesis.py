"""A header block from typed fields, for servers that list messages as fields rather than MIME (EWS, Graph).

The values come from the server, which takes them from the mail: every one is flattened
to one line (a subject holding ``\\r\\nBcc: …`` cannot add a header) and RFC 2047-encoded
where it is not ASCII, so that :class:`~postroom.message.Message` and the filters read it
as they read any header.
"""

from __future__ import annotations

import datetime as dt
import email.header
import email.utils
from collections.abc import Iterable
from dataclasses import dataclass

from postroom.validation import one_line

__all__ = ["Synthesized", "header_block", "header_line"]


@dataclass(frozen=True)
class Synthesized:
    """The header fields a typed listing gives: addresses as ``(name, address)``."""

    subject: str = ""
    sender: tuple[str, str] | None = None
    to: tuple[tuple[str, str], ...] = ()
    cc: tuple[tuple[str, str], ...] = ()
    bcc: tuple[tuple[str, str], ...] = ()
    reply_to: tuple[tuple[str, str], ...] = ()
    date: dt.datetime | None = None
    message_id: str | None = None
    in_reply_to: str | None = None


def header_line(name: str, value: str) -> bytes:
    """``Name: value`` on one line, RFC 2047-encoded when not ASCII."""
    value = one_line(value)
    if not value.isascii():
        value = email.header.Header(value, "utf-8", maxlinelen=998).encode()
    return f"{name}: {value}\r\n".encode("ascii", "replace")


def _address(pair: tuple[str, str]) -> str:
    name, address = (one_line(part) for part in pair)
    if name == address:
        name = ""
    return email.utils.formataddr((name, address), charset="utf-8") if name else address


def _addresses(pairs: Iterable[tuple[str, str]]) -> str:
    return ", ".join(_address(pair) for pair in pairs)


def header_block(fields: Synthesized) -> bytes:
    """The header block of ``fields``: From, To, Cc, Bcc, Reply-To, Subject, Date, Message-ID, In-Reply-To."""
    lines = []
    if fields.sender is not None:
        lines.append(header_line("From", _address(fields.sender)))
    for name, pairs in (("To", fields.to), ("Cc", fields.cc), ("Bcc", fields.bcc), ("Reply-To", fields.reply_to)):
        if pairs:
            lines.append(header_line(name, _addresses(pairs)))
    lines.append(header_line("Subject", fields.subject))
    if fields.date is not None:
        date = fields.date if fields.date.tzinfo else fields.date.replace(tzinfo=dt.UTC)
        lines.append(header_line("Date", email.utils.format_datetime(date)))
    for name, value in (("Message-ID", fields.message_id), ("In-Reply-To", fields.in_reply_to)):
        if value:
            lines.append(header_line(name, value))
    return b"".join(lines)
