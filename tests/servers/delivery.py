"""What Exchange keeps of a MIME message on delivery, for the EWS and Graph stand-ins.

Exchange parses the MIME into typed fields: addresses, dates, one body (HTML when there is
one), the attachments (an attached message as its MIME), the headers, and for an iTIP
message (a ``text/calendar`` part) the meeting it is about.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

__all__ = ["Delivered", "DeliveredFile", "Meeting", "parse_delivery"]


@dataclass(frozen=True)
class DeliveredFile:
    name: str
    content_type: str
    content: bytes
    is_inline: bool
    content_id: str | None
    #: An attached message (``message/rfc822``): ``content`` is its MIME.
    is_message: bool


@dataclass(frozen=True)
class Meeting:
    """iTIP: ``METHOD`` (REQUEST, CANCEL, REPLY), the replying attendee's ``PARTSTAT``, and the event."""

    method: str
    partstat: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    location: str


@dataclass(frozen=True)
class Delivered:
    subject: str
    sender: tuple[str, str]
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    bcc: list[tuple[str, str]]
    reply_to: list[tuple[str, str]]
    message_id: str
    sent: dt.datetime
    body: str
    #: ``html`` or ``text``.
    body_type: str
    attachments: list[DeliveredFile]
    headers: list[tuple[str, str]]
    meeting: Meeting | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _when(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text.rstrip("Z"), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def _meeting(msg: EmailMessage) -> Meeting | None:
    for part in msg.walk():
        if part.get_content_type() != "text/calendar":
            continue
        assert isinstance(part, EmailMessage)
        method = str(part.get_param("method") or "").upper()
        if method not in ("REQUEST", "CANCEL", "REPLY"):
            return None
        text = part.get_content()
        status = re.search(r"PARTSTAT=(ACCEPTED|DECLINED|TENTATIVE)", text)
        start = re.search(r"DTSTART[^:]*:(\d{8}T\d{6}Z?)", text)
        end = re.search(r"DTEND[^:]*:(\d{8}T\d{6}Z?)", text)
        place = re.search(r"LOCATION:(.*)", text)
        return Meeting(
            method,
            status.group(1) if status else None,
            _when(start.group(1)) if start else None,
            _when(end.group(1)) if end else None,
            place.group(1).strip() if place else "",
        )
    return None


def parse_delivery(raw: bytes) -> Delivered:
    """``raw`` as Exchange files it."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)

    def addresses(name: str) -> list[tuple[str, str]]:
        return [(n, a) for n, a in email.utils.getaddresses([str(v) for v in msg.get_all(name, [])]) if a or n]

    body_part = msg.get_body(("html", "plain"))
    body, body_type = "", "text"
    if body_part is not None:
        body = body_part.get_content()
        body_type = "html" if body_part.get_content_type() == "text/html" else "text"
    files = []
    for part in msg.iter_attachments():
        if part.get_content_type() == "text/calendar":
            continue  # the meeting itself, not a file
        name = part.get_filename() or ""
        inner: Any = part.get_payload()
        is_message = part.get_content_type() == "message/rfc822"
        if is_message and isinstance(inner, list):
            content = inner[0].as_bytes()
            name = name or str(inner[0]["Subject"] or "")
        else:
            content = bytes(part.get_payload(decode=True) or b"") if not part.is_multipart() else part.as_bytes()
        files.append(
            DeliveredFile(
                name,
                part.get_content_type(),
                content,
                part.get_content_disposition() == "inline",
                (part.get("Content-ID") or "").strip("<>") or None,
                is_message,
            )
        )
    senders = addresses("From")
    try:
        date = msg.get("Date")
        sent = email.utils.parsedate_to_datetime(str(date)) if date else dt.datetime.now(dt.UTC)
    except (TypeError, ValueError):
        sent = dt.datetime.now(dt.UTC)
    return Delivered(
        subject=str(msg.get("Subject", "")),
        sender=senders[0] if senders else ("", ""),
        to=addresses("To"),
        cc=addresses("Cc"),
        bcc=addresses("Bcc"),
        reply_to=addresses("Reply-To"),
        message_id=str(msg.get("Message-ID", "")).strip(),
        sent=sent if sent.tzinfo else sent.replace(tzinfo=dt.UTC),
        body=body,
        body_type=body_type,
        attachments=files,
        headers=[(k, str(v)) for k, v in msg.items()],
        meeting=_meeting(msg),
    )
