"""A lazy, parsed view of one email.

Headers and structure come with the loop; the text body, the full header block,
attachments and the raw message are fetched only when asked for, through a
:class:`MessageSource` bound to the session. Nothing here raises on malformed
mail: what cannot be decoded is recorded in :attr:`Message.defects`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal, Protocol, TypedDict, cast

from postroom.message.cached import cached
from postroom.message.decode import decode_text, decode_words, parse_addresses, parse_date
from postroom.message.headers import HeaderBlock, split_header_block
from postroom.message.html_text import html_to_text
from postroom.message.keys import MessageKey
from postroom.message.meeting import MEETING_METHODS, Meeting, MeetingType, meeting_from_calendar
from postroom.message.raw import EmlKey, RawSource, summary_of_raw
from postroom.message.saving import SavedFile, save_attachments, save_email
from postroom.message.structure import MimePart, parse_raw, structure_of
from postroom.message.summary import MessageSummary

__all__ = ["PROPERTY_KEYS", "Address", "BodyFormat", "Message", "MessageProperties", "MessageSource"]

BodyFormat = Literal["plain", "html"]

# Bodies get Unix line ends; re.sub beats str.replace once a text has a few dozen lines
# (replace searches anew for every occurrence).
_CRLF = re.compile("\r\n")
# RFC 5322 specials: a display name with one of them is quoted.
_SPECIALS = re.compile(r'[()<>@,;:\\".\[\]]')

#: The keys of :meth:`Message.properties`, stable across versions.
PROPERTY_KEYS = (
    "key",
    "uid",
    "folder",
    "message_id",
    "from",
    "from_address",
    "from_name",
    "to",
    "cc",
    "bcc",
    "reply_to",
    "subject",
    "sent_date",
    "received_date",
    "size",
    "seen",
    "flagged",
    "body",
    "text",
    "html",
    "attachment_names",
    "has_attachments",
    "item_kind",
    "meeting_type",
    "meeting_start",
    "meeting_end",
    "meeting_location",
    "headers",
    "defects",
)


#: What :meth:`Message.properties` returns: JSON-ready values under :data:`PROPERTY_KEYS` (``from`` is a
#: Python keyword, hence the functional form). Bodies and headers are None unless asked for.
MessageProperties = TypedDict(
    "MessageProperties",
    {
        "key": str,
        "uid": "int | str",
        "folder": str,
        "message_id": str,
        "from": str,
        "from_address": str,
        "from_name": str,
        "to": list[str],
        "cc": list[str],
        "bcc": list[str],
        "reply_to": list[str],
        "subject": str,
        "sent_date": "str | None",
        "received_date": "str | None",
        "size": int,
        "seen": "bool | None",
        "flagged": "bool | None",
        "body": "str | None",
        "text": "str | None",
        "html": "str | None",
        "attachment_names": list[str],
        "has_attachments": bool,
        "item_kind": str,
        "meeting_type": "str | None",
        "meeting_start": "str | None",
        "meeting_end": "str | None",
        "meeting_location": "str | None",
        "headers": "dict[str, list[str]] | None",
        "defects": list[str],
    },
)


@dataclass(frozen=True)
class Address:
    """A mailbox: display name and address."""

    name: str
    address: str

    def __str__(self) -> str:
        if not self.address:  # a malformed header left only a name: show it as the stdlib does
            return '"' + self.name.replace("\\", "\\\\").replace('"', '\\"') + '"' if self.name else ""
        if not self.name:
            return self.address
        name = self.name
        if _SPECIALS.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{self.address}>"


class MessageSource(Protocol):
    """How a message fetches what it did not get with the loop (bound to a session)."""

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        """The part's content with its transfer encoding undone."""
        ...

    def header_block(self, key: MessageKey) -> bytes:
        """The complete header block."""
        ...

    def raw(self, key: MessageKey) -> bytes:
        """The whole message, byte for byte as the server holds it."""
        ...

    def stream_part(self, key: MessageKey, part: MimePart, sink: BinaryIO) -> int:
        """Write the part's decoded content to ``sink`` in chunks (from its start); return the byte count."""
        ...


class Message:
    """One email in a session. Properties are computed on first use and then cached."""

    def __init__(self, summary: MessageSummary, source: MessageSource, *, body_format: BodyFormat = "plain") -> None:
        self.summary = summary
        self._source = source
        self.body_format = body_format
        self.defects: list[str] = list(summary.defects)

    def __repr__(self) -> str:
        return f"<Message {self.key} {self.subject[:40]!r}>"

    @classmethod
    def from_bytes(cls, raw: bytes, *, body_format: BodyFormat = "plain") -> Message:
        """A message read from its bytes (an ``.eml`` file), outside any session; malformed mail never raises."""
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise TypeError(f"Message.from_bytes needs bytes, got {type(raw).__name__}")
        data = bytes(raw)
        key = EmlKey.of(data)
        return cls(summary_of_raw(key, data), RawSource(lambda _key: data), body_format=body_format)

    # -- identity and flags ---------------------------------------------------------------

    @property
    def key(self) -> MessageKey:
        return self.summary.key

    @property
    def uid(self) -> int | str:
        """IMAP UID, the POP3 UIDL or the EWS item id."""
        return self.key.id

    @property
    def folder(self) -> str:
        return self.key.folder

    @property
    def size(self) -> int:
        return self.summary.size

    @property
    def seen(self) -> bool | None:
        """Read status; None on POP3, which has no flags."""
        flags = self.summary.flags
        return None if flags is None else "\\Seen" in flags

    @property
    def flags(self) -> frozenset[str] | None:
        """Every flag and keyword the server keeps for the message (``\\Seen``, ``\\Flagged``, ``Invoice``);
        None on POP3."""
        return self.summary.flags

    @property
    def flagged(self) -> bool | None:
        flags = self.summary.flags
        return None if flags is None else "\\Flagged" in flags

    @property
    def received_date(self) -> dt.datetime | None:
        """When the server received it (IMAP INTERNALDATE); the Date header on POP3."""
        return self.summary.received or self.sent_date

    # -- headers ----------------------------------------------------------------------------

    @cached
    def _header(self) -> HeaderBlock:
        return split_header_block(self.summary.header, self.defects)

    def _get(self, name: str) -> str | None:
        value = self._header.get(name)
        if value is None:
            return None
        return decode_words(value, self.defects)

    def _addresses(self, name: str) -> list[Address]:
        return [Address(n, a) for n, a in parse_addresses(self._header.get_all(name), self.defects)]

    @cached
    def subject(self) -> str:
        return self._get("Subject") or ""

    @cached
    def from_(self) -> Address | None:
        found = self._addresses("From")
        return found[0] if found else None

    @property
    def from_address(self) -> str:
        return self.from_.address if self.from_ else ""

    @property
    def from_name(self) -> str:
        return self.from_.name if self.from_ else ""

    @cached
    def sender_text(self) -> str:
        """``Name <address>`` of the sender, what sender filters match against."""
        return f"{self.from_name} <{self.from_address}>" if self.from_ else (self._get("From") or "")

    @cached
    def to(self) -> list[Address]:
        return self._addresses("To")

    @cached
    def cc(self) -> list[Address]:
        return self._addresses("Cc")

    @cached
    def bcc(self) -> list[Address]:
        return self._addresses("Bcc")

    @cached
    def reply_to(self) -> list[Address]:
        return self._addresses("Reply-To")

    @cached
    def message_id(self) -> str:
        return (self._get("Message-ID") or "").strip()

    @cached
    def in_reply_to(self) -> str:
        return (self._get("In-Reply-To") or "").strip()

    @cached
    def references(self) -> list[str]:
        return (self._get("References") or "").split()

    @cached
    def sent_date(self) -> dt.datetime | None:
        return parse_date(self._get("Date"), self.defects)

    @cached
    def headers(self) -> dict[str, list[str]]:
        """Every header (names as sent, values decoded), fetched on first use."""
        parsed = split_header_block(self._source.header_block(self.key), self.defects)
        out: dict[str, list[str]] = {}
        for name, value in parsed.fields:
            out.setdefault(name, []).append(decode_words(value, self.defects))
        return out

    # -- structure and bodies -------------------------------------------------------------

    @cached
    def structure(self) -> MimePart:
        if self.summary.structure is not None:
            return self.summary.structure
        source = self._source
        from_source = getattr(source, "structure", None)  # a source that reads whole messages (RawSource, POP3)
        found = from_source(self.key, self.defects) if from_source is not None else None
        if isinstance(found, MimePart):
            return found
        return structure_of(parse_raw(self.raw(), self.defects), "", self.defects)

    def _part_text(self, part: MimePart | None) -> str | None:
        if part is None:
            return None
        data = self._source.part_content(self.key, part)
        return _CRLF.sub("\n", decode_text(data, part.charset, self.defects))

    @cached
    def html(self) -> str | None:
        """The HTML body, or None."""
        return self._part_text(self.structure.body_parts()[1])

    @cached
    def text(self) -> str:
        """The plain-text body; derived from the HTML body when there is no text part."""
        plain, html_part = self.structure.body_parts()
        if plain is not None:
            return self._part_text(plain) or ""
        if html_part is not None:
            return html_to_text(self.html or "")
        return ""

    @property
    def body(self) -> str:
        """The body in the loop's format: HTML when asked and present, else text."""
        if self.body_format == "html" and self.html is not None:
            return self.html
        return self.text

    def attachments(self, *, include_inline: bool = False) -> list[MimePart]:
        return self.structure.attachments(include_inline=include_inline)

    @cached
    def attachment_names(self) -> list[str]:
        return [part.filename or _default_name(part) for part in self.attachments()]

    @property
    def has_attachments(self) -> bool:
        return bool(self.attachments())

    # -- meetings -------------------------------------------------------------------------

    @property
    def item_kind(self) -> Literal["message", "meeting"]:
        """``"meeting"`` for an invitation, a cancellation or a reply to one; ``"message"`` otherwise."""
        return "meeting" if self.meeting_type is not None else "message"

    @property
    def meeting_type(self) -> MeetingType | None:
        """``request``, ``cancellation``, ``accepted``, ``tentative``, ``declined`` or ``response``; None for mail."""
        if self.summary.meeting is not None:
            return self.summary.meeting.type
        part = self._calendar_part
        if part is None:
            return None
        method = MEETING_METHODS.get(part.params.get("method", "").lower())
        if method in ("request", "cancellation"):
            return method  # type: ignore[return-value]
        found = self.meeting
        return found.type if found else None

    @cached
    def meeting(self) -> Meeting | None:
        """The meeting a meeting message is about: type, and start, end and location when the server or the
        calendar part says (the part is fetched when asked for)."""
        if self.summary.meeting is not None:
            return self.summary.meeting
        part = self._calendar_part
        if part is None:
            return None
        text = self._part_text(part) or ""
        return meeting_from_calendar(text, part.params.get("method"))

    @cached
    def _calendar_part(self) -> MimePart | None:
        """The ``text/calendar`` part of an iTIP message (an invitation's body or its ``.ics``), if any."""
        for part in self.structure.walk():
            if part.content_type == "text/calendar":
                return part
        return None

    def raw(self) -> bytes:
        """The whole message as the server holds it (fetched each call; not cached)."""
        return self._source.raw(self.key)

    def part_content(self, part: MimePart) -> bytes:
        """A part's content, transfer encoding undone (held in memory: prefer :meth:`stream_part` for files)."""
        return self._source.part_content(self.key, part)

    def stream_part(self, part: MimePart, sink: BinaryIO) -> int:
        """Write a part's decoded content to a seekable binary file, chunk by chunk."""
        return self._source.stream_part(self.key, part, sink)

    def save_attachments(self, folder: str | Path, **options: Any) -> list[SavedFile]:
        """Shortcut for :func:`postroom.save_attachments` on this message."""
        return save_attachments(self, folder, **options)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Shortcut for :func:`postroom.save_email` on this message."""
        return save_email(self, path, overwrite=overwrite)

    # -- the properties dictionary --------------------------------------------------------

    def properties(self, *, with_bodies: bool = True, with_headers: bool = False) -> MessageProperties:
        """The documented properties (:data:`PROPERTY_KEYS`) as plain JSON-ready values.

        Bodies are fetched unless ``with_bodies=False``; all headers only with ``with_headers=True``.
        """
        lazy: dict[str, Callable[[], Any]] = {
            "body": lambda: self.body,
            "text": lambda: self.text,
            "html": lambda: self.html,
        }
        meeting = self.meeting
        data: dict[str, Any] = {
            "key": str(self.key),
            "uid": self.uid,
            "folder": self.folder,
            "message_id": self.message_id,
            "from": str(self.from_) if self.from_ else "",
            "from_address": self.from_address,
            "from_name": self.from_name,
            "to": [str(a) for a in self.to],
            "cc": [str(a) for a in self.cc],
            "bcc": [str(a) for a in self.bcc],
            "reply_to": [str(a) for a in self.reply_to],
            "subject": self.subject,
            "sent_date": self.sent_date.isoformat() if self.sent_date else None,
            "received_date": self.received_date.isoformat() if self.received_date else None,
            "size": self.size,
            "seen": self.seen,
            "flagged": self.flagged,
            "attachment_names": self.attachment_names,
            "has_attachments": self.has_attachments,
            "item_kind": self.item_kind,
            "meeting_type": meeting.type if meeting else None,
            "meeting_start": meeting.start.isoformat() if meeting and meeting.start else None,
            "meeting_end": meeting.end.isoformat() if meeting and meeting.end else None,
            "meeting_location": meeting.location if meeting else None,
        }
        for name, get in lazy.items():
            data[name] = get() if with_bodies else None
        data["headers"] = self.headers if with_headers else None
        data["defects"] = list(self.defects)
        return cast(MessageProperties, {key: data[key] for key in PROPERTY_KEYS})


def _default_name(part: MimePart) -> str:
    if part.is_message:
        return "message.eml"
    extension = {"application/pdf": ".pdf", "text/plain": ".txt", "text/html": ".html"}.get(part.content_type, ".bin")
    return f"part-{part.fetch_section}{extension}"
