"""Graph's message JSON → the summaries every transport hands to a loop.

Graph lists typed fields, not MIME. They become a header block (see
:mod:`postroom.transports.synthesis`) and a MIME structure:

- the body as ``multipart/alternative`` of a text and an HTML part; Exchange renders
  either on request (``Prefer: outlook.body-content-type``), so ``text`` and ``html``
  read the same on every message;
- each attachment as a further part carrying its Graph id and kind: a file, an attached
  item (saved as ``.eml``), or a reference (a link to OneDrive or SharePoint, listed only).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from postroom.message.meeting import Meeting, MeetingType
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.graph.keys import GraphKey
from postroom.transports.synthesis import Synthesized, header_block

__all__ = [
    "EXPAND",
    "LIST_FIELDS",
    "MEETING_FIELDS",
    "body_handle",
    "is_meeting",
    "meeting_of",
    "parse_time",
    "summary_of",
]

#: Fields of a listing (``$select``): what a loop filters on and shows, no body.
LIST_FIELDS = ",".join(
    (
        "id",
        "subject",
        "from",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "replyTo",
        "receivedDateTime",
        "sentDateTime",
        "isRead",
        "flag",
        "internetMessageId",
        "categories",
        "parentFolderId",
    )
)
#: PidTagMessageSize (MS-OXPROPS): Graph has no size property of its own.
SIZE_PROPERTY = "Integer 0x0E08"
#: Attachments' names, types and sizes come with the listing (never their content), and the size.
EXPAND = (
    "attachments($select=id,name,contentType,size,isInline),"
    f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')"
)
#: An eventMessage's own fields (asked for only for meeting messages).
MEETING_FIELDS = "meetingMessageType,startDateTime,endDateTime,location,isAllDay"

_MEETING_TYPES: dict[str, MeetingType] = {
    "meetingRequest": "request",
    "meetingCancelled": "cancellation",
    "meetingAccepted": "accepted",
    "meetingTenativelyAccepted": "tentative",  # Graph's spelling
    "meetingTentativelyAccepted": "tentative",
    "meetingDeclined": "declined",
}


def body_handle(kind: str) -> str:
    return f"body:{kind}"


def parse_time(value: object) -> dt.datetime | None:
    """An ISO-8601 time as Graph writes it (``2026-12-01T08:00:00Z``), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _pair(value: object) -> tuple[str, str] | None:
    address = value.get("emailAddress") if isinstance(value, Mapping) else None
    if not isinstance(address, Mapping):
        return None
    return str(address.get("name") or ""), str(address.get("address") or "")


def _pairs(values: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(values, list):
        return ()
    return tuple(pair for pair in (_pair(v) for v in values) if pair is not None)


def is_meeting(item: Mapping[str, Any]) -> bool:
    return str(item.get("@odata.type") or "").startswith("#microsoft.graph.eventMessage")


def meeting_of(item: Mapping[str, Any]) -> Meeting | None:
    """The meeting an eventMessage is about (its type, and start, end and place when Graph gave them)."""
    if not is_meeting(item):
        return None
    kind: MeetingType = _MEETING_TYPES.get(str(item.get("meetingMessageType") or ""), "response")
    if item.get("@odata.type") == "#microsoft.graph.eventMessageRequest":
        kind = "request" if kind == "response" else kind
    location = item.get("location")
    place = str(location.get("displayName") or "") if isinstance(location, Mapping) else ""
    return Meeting(kind, _zoned(item.get("startDateTime")), _zoned(item.get("endDateTime")), place or None)


def _zoned(value: object) -> dt.datetime | None:
    """A ``dateTimeTimeZone`` (``{"dateTime", "timeZone"}``); Graph gives UTC unless asked otherwise."""
    if not isinstance(value, Mapping):
        return None
    return parse_time(value.get("dateTime"))


def _size(item: Mapping[str, Any]) -> int:
    for prop in item.get("singleValueExtendedProperties") or ():
        if isinstance(prop, Mapping) and str(prop.get("id", "")).lower() == SIZE_PROPERTY.lower():
            try:
                return int(prop.get("value") or 0)
            except (TypeError, ValueError):
                return 0
    return 0


def _attachment(number: int, item: Mapping[str, Any]) -> MimePart:
    kind = str(item.get("@odata.type") or "#microsoft.graph.fileAttachment").rpartition(".")[2]
    name = str(item.get("name") or "")
    if kind == "itemAttachment":
        content_type, handle = "message/rfc822", f"item:{item.get('id')}"
        if name and not name.lower().endswith(".eml"):
            name += ".eml"
    elif kind == "referenceAttachment":
        content_type, handle = "application/octet-stream", f"ref:{item.get('id')}"
    else:
        content_type, handle = str(item.get("contentType") or "application/octet-stream"), f"file:{item.get('id')}"
    params = {"name": name} if name else {}
    try:
        size = int(item.get("size") or 0)
    except (TypeError, ValueError):
        size = 0
    return MimePart(
        str(number),
        content_type.lower().split(";")[0].strip() or "application/octet-stream",
        params,
        disposition="inline" if item.get("isInline") else "attachment",
        disposition_params={"filename": name} if name else {},
        encoding="binary",
        size=size,
        handle=handle,
    )


def _bodies(section: str) -> MimePart:
    charset = {"charset": "utf-8"}
    return MimePart(
        section,
        "multipart/alternative",
        children=(
            MimePart(
                f"{section}.1" if section else "1", "text/plain", charset, encoding="8bit", handle=body_handle("text")
            ),
            MimePart(
                f"{section}.2" if section else "2", "text/html", charset, encoding="8bit", handle=body_handle("html")
            ),
        ),
    )


def summary_of(item: Mapping[str, Any], folder: str, meeting: Mapping[str, Any] | None = None) -> MessageSummary:
    """A loop summary of one listed message (``meeting``: its eventMessage fields, fetched apart)."""
    fields = Synthesized(
        subject=str(item.get("subject") or ""),
        sender=_pair(item.get("from")),
        to=_pairs(item.get("toRecipients")),
        cc=_pairs(item.get("ccRecipients")),
        bcc=_pairs(item.get("bccRecipients")),
        reply_to=_pairs(item.get("replyTo")),
        date=parse_time(item.get("sentDateTime")),
        message_id=str(item.get("internetMessageId") or "") or None,
    )
    attachments = [
        _attachment(number, entry)
        for number, entry in enumerate((a for a in item.get("attachments") or () if isinstance(a, Mapping)), start=2)
    ]
    structure = MimePart("", "multipart/mixed", children=(_bodies("1"), *attachments)) if attachments else _bodies("")
    flags = {"\\Seen"} if item.get("isRead") else set()
    flag = item.get("flag")
    if isinstance(flag, Mapping) and flag.get("flagStatus") == "flagged":
        flags.add("\\Flagged")
    flags.update(str(c) for c in item.get("categories") or () if isinstance(c, str) and c)
    return MessageSummary(
        key=GraphKey(folder, str(item["id"])),
        header=header_block(fields),
        flags=frozenset(flags),
        size=_size(item),
        received=parse_time(item.get("receivedDateTime")),
        structure=structure,
        meeting=meeting_of({**item, **(meeting or {})}),
    )
