"""Meeting messages: invitations, cancellations and replies, read as emails on every backend.

Graph and EWS say it in the item's type (``eventMessage`` with ``meetingMessageType``;
``MeetingRequest``/``MeetingCancellation``/``MeetingResponse``). Over IMAP and POP3 it is a
``text/calendar`` part (RFC 5546 iTIP): ``METHOD:REQUEST``, ``CANCEL`` or ``REPLY`` with the
attendee's ``PARTSTAT``. Either way a message gets the same properties: ``item_kind``
("message" or "meeting") and ``meeting_type``, with the start, end and place when known.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["MEETING_METHODS", "Meeting", "MeetingType", "meeting_from_calendar"]

MeetingType = Literal["request", "cancellation", "accepted", "tentative", "declined", "response"]
#: iTIP methods that make a message a meeting message (PUBLISH is a calendar, not an invitation).
MEETING_METHODS = {"request": "request", "cancel": "cancellation", "reply": "response", "counter": "response"}
_PARTSTAT: dict[str, MeetingType] = {"accepted": "accepted", "tentative": "tentative", "declined": "declined"}


@dataclass(frozen=True)
class Meeting:
    """What a meeting message is about."""

    type: MeetingType
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    location: str | None = None


_UNFOLD = re.compile(r"\r?\n[ \t]")
_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})?(Z)?)?$")


def _content_lines(text: str) -> list[tuple[str, dict[str, str], str]]:
    """(NAME, params, value) per content line of an iCalendar text (RFC 5545 §3.1), unfolded."""
    lines = []
    for line in _UNFOLD.sub("", text).splitlines():
        head, colon, value = line.partition(":")
        if not colon:
            continue
        name, *raw_params = head.split(";")
        params = {}
        for param in raw_params:
            key, _, param_value = param.partition("=")
            params[key.strip().upper()] = param_value.strip().strip('"')
        lines.append((name.strip().upper(), params, value.strip()))
    return lines


def _time(value: str, params: dict[str, str]) -> dt.datetime | None:
    found = _TIME.match(value)
    if found is None:
        return None
    year, month, day, hour, minute, second, utc = found.groups()
    try:
        when = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if utc:
        return when.replace(tzinfo=dt.UTC)
    zone = params.get("TZID")
    if zone:
        try:
            return when.replace(tzinfo=ZoneInfo(zone))
        except (ZoneInfoNotFoundError, ValueError):
            return when  # a Windows zone name ("W. Europe Standard Time"): the time as written
    return when


def _unescape(value: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), value)


def meeting_from_calendar(text: str, method: str | None = None) -> Meeting | None:
    """The meeting a ``text/calendar`` body describes, or None when it is no invitation, cancellation or reply."""
    lines = _content_lines(text)
    method = (method or next((value for name, _, value in lines if name == "METHOD"), "")).strip().lower()
    kind: MeetingType | None = MEETING_METHODS.get(method)  # type: ignore[assignment]
    if kind is None:
        return None
    start = end = None
    location = None
    in_event = False
    for name, params, value in lines:
        if name == "BEGIN" and value.upper() == "VEVENT":
            in_event = True
        elif name == "END" and value.upper() == "VEVENT":
            break
        elif not in_event:
            continue
        elif name == "DTSTART":
            start = _time(value, params)
        elif name == "DTEND":
            end = _time(value, params)
        elif name == "LOCATION" and value:
            location = _unescape(value)
        elif name == "ATTENDEE" and kind == "response":
            kind = _PARTSTAT.get(params.get("PARTSTAT", "").lower(), "response")
    return Meeting(kind, start, end, location)
