"""EWS items → the summaries every transport hands to a loop.

EWS gives typed fields (subject, sender, recipients, dates, body, attachment list),
not a MIME header block. They become an RFC 5322 header block (RFC 2047-encoded
where not ASCII) and a MIME structure — the body as part ``1``, each attachment as
part ``2``, ``3``… carrying its EWS attachment id — so that :class:`~postroom.message.Message`,
the filters and the actions work unchanged. Every text value passes through
:func:`~postroom.transports.ews.xml.clean_text`: what XML could not carry shows as
U+FFFD and is recorded as a defect of the message.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from exchangelib import HTMLBody, ItemAttachment, Message
from exchangelib.extended_properties import Flag
from exchangelib.items.calendar_item import MeetingCancellation, MeetingRequest, MeetingResponse

from postroom.message.meeting import Meeting, MeetingType
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.ews.keys import EwsKey
from postroom.transports.ews.xml import clean_text
from postroom.transports.synthesis import Synthesized, header_block

__all__ = ["SUMMARY_FIELDS", "body_of", "header_block_of", "summary_of"]

#: The MIME parameter that carries an attachment's EWS id inside a synthesised structure.
#: exchangelib field names fetched for each message of a loop (GetItem, one request per chunk).
SUMMARY_FIELDS = (
    "subject",
    "author",
    "to_recipients",
    "cc_recipients",
    "bcc_recipients",
    "reply_to",
    "message_id",
    "in_reply_to",
    "datetime_sent",
    "datetime_received",
    "is_read",
    "postroom_flag_status",
    "size",
    "attachments",
    "body",
    "item_class",
    "categories",
)


#: PidTagFlagStatus (MS-OXOFLAG): 2 is "flagged for follow-up", what IMAP shows as \\Flagged; 1 is completed.
_FLAGGED = 2
for _kind in (Message, MeetingRequest, MeetingCancellation, MeetingResponse):
    if "postroom_flag_status" not in _kind.FIELDS:  # exchangelib has no field for it: an extended MAPI property
        _kind.register("postroom_flag_status", Flag)


class _Cleaner:
    """Cleans values and remembers, per field, how many characters it replaced."""

    def __init__(self) -> None:
        self.defects: list[str] = []

    def __call__(self, field: str, value: object) -> str:
        text, replaced = clean_text(None if value is None else str(value))
        if replaced:
            self.defects.append(f"{field}: {replaced} character(s) that XML cannot carry were replaced with U+FFFD")
        return text


def _pair(clean: _Cleaner, field: str, mailbox: Any) -> tuple[str, str]:
    name = clean(f"{field} name", getattr(mailbox, "name", None) or "")
    return name, clean(f"{field} address", getattr(mailbox, "email_address", None) or "")


def _pairs(clean: _Cleaner, field: str, mailboxes: Iterable[Any] | None) -> tuple[tuple[str, str], ...]:
    return tuple(_pair(clean, field, m) for m in mailboxes or ())


def header_block_of(item: Any, clean: _Cleaner | None = None) -> tuple[bytes, list[str]]:
    """The header block of an EWS message (from its typed fields), and the defects met."""
    clean = clean or _Cleaner()
    optional = {name: getattr(item, name, None) for name in ("message_id", "in_reply_to")}
    fields = Synthesized(
        sender=_pair(clean, "from", item.author) if item.author is not None else None,
        to=_pairs(clean, "to", getattr(item, "to_recipients", None)),
        cc=_pairs(clean, "cc", getattr(item, "cc_recipients", None)),
        bcc=_pairs(clean, "bcc", getattr(item, "bcc_recipients", None)),
        reply_to=_pairs(clean, "reply-to", getattr(item, "reply_to", None)),
        subject=clean("subject", item.subject or ""),
        date=_aware(item.datetime_sent) if item.datetime_sent is not None else None,
        message_id=clean("message-id", optional["message_id"]) if optional["message_id"] else None,
        in_reply_to=clean("in-reply-to", optional["in_reply_to"]) if optional["in_reply_to"] else None,
    )
    return header_block(fields), clean.defects


def _aware(value: dt.datetime) -> dt.datetime:
    """exchangelib's ``EWSDateTime`` as a plain aware datetime in UTC (its ``astimezone`` and ``replace`` refuse
    the stdlib's time zones, so handing it on would break user code that converts a date)."""
    if value.tzinfo is not None:
        value = dt.datetime.fromtimestamp(value.timestamp(), dt.UTC)
    return dt.datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=dt.UTC
    )


def body_of(item: Any, clean: _Cleaner | None = None) -> tuple[bytes, str]:
    """The body as UTF-8 bytes, and its MIME type (EWS says HTML or Text)."""
    clean = clean or _Cleaner()
    body = item.body
    content_type = "text/html" if isinstance(body, HTMLBody) else "text/plain"
    return clean("body", body or "").encode("utf-8", "surrogatepass"), content_type


def summary_of(item: Any, folder: str) -> MessageSummary:
    """A loop summary of an exchangelib ``Message`` fetched with :data:`SUMMARY_FIELDS`."""
    clean = _Cleaner()
    header, _ = header_block_of(item, clean)
    body, content_type = body_of(item, clean)
    body_part = MimePart("1", content_type, {"charset": "utf-8"}, encoding="8bit", size=len(body))
    attachments = []
    for number, attachment in enumerate(item.attachments or (), start=2):
        name = clean("attachment name", attachment.name or "")
        content_type_of = (
            "message/rfc822"
            if isinstance(attachment, ItemAttachment)
            else (attachment.content_type or "application/octet-stream")
        )
        params = {"name": name} if name else {}
        attachments.append(
            MimePart(
                str(number),
                content_type_of.lower(),
                params,
                disposition="inline" if attachment.is_inline else "attachment",
                disposition_params={"filename": name} if name else {},
                encoding="binary",
                size=attachment.size or 0,
                content_id=getattr(attachment, "content_id", None),
                handle=attachment.attachment_id.id,
            )
        )
    if attachments:
        structure = MimePart("", "multipart/mixed", children=(body_part, *attachments))
    else:
        structure = MimePart("", content_type, {"charset": "utf-8"}, encoding="8bit", size=len(body))
    received = _aware(item.datetime_received) if item.datetime_received is not None else None
    meeting = meeting_of_class(getattr(item, "item_class", None))
    return MessageSummary(
        key=EwsKey(folder, item.id),
        header=header,
        flags=frozenset(
            [
                *(
                    name
                    for name, on in (("\\Seen", item.is_read), ("\\Flagged", item.postroom_flag_status == _FLAGGED))
                    if on
                ),
                *(str(c) for c in getattr(item, "categories", None) or () if c),  # Outlook categories: keywords
            ]
        ),
        size=item.size or 0,
        received=received,
        structure=structure,
        body_start=body,
        defects=tuple(dict.fromkeys(clean.defects)),
        meeting=meeting,
    )


#: Exchange's item classes of meeting messages (MS-OXOCAL 2.2.6.1) → the meeting type.
_MEETING_CLASSES: dict[str, MeetingType] = {
    "ipm.schedule.meeting.request": "request",
    "ipm.schedule.meeting.canceled": "cancellation",
    "ipm.schedule.meeting.resp.pos": "accepted",
    "ipm.schedule.meeting.resp.tent": "tentative",
    "ipm.schedule.meeting.resp.neg": "declined",
}


def meeting_of_class(item_class: str | None) -> Meeting | None:
    """The meeting an item of ``item_class`` is (its type only: EWS lists the calendar fields apart)."""
    if not item_class:
        return None
    folded = item_class.lower()
    kind = _MEETING_CLASSES.get(folded)
    if kind is None and folded.startswith("ipm.schedule.meeting.resp"):
        kind = "response"
    return Meeting(kind) if kind is not None else None
