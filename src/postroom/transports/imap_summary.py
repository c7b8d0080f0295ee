"""One FETCH response of the loop → a :class:`~postroom.message.summary.MessageSummary`."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from postroom.message.decode import MONTH_NUMBERS, fixed_zone
from postroom.message.summary import MessageKey, MessageSummary
from postroom.transports.imap_bodystructure import parse_bodystructure

__all__ = ["internaldate", "summary_from"]


def summary_from(items: Mapping[str, object], folder: str, validity: int) -> MessageSummary | None:
    uid_value = items.get("UID")
    if not isinstance(uid_value, bytes) or not uid_value.isdigit():
        return None
    flags_value = items.get("FLAGS")
    flags = (
        frozenset([f.decode("ascii", "replace") for f in flags_value if isinstance(f, bytes)])
        if isinstance(flags_value, list)
        else frozenset()
    )
    size_value = items.get("RFC822.SIZE")
    header = b""
    first: bytes | None = None
    for name in items:
        if name[:5] != "BODY[":
            continue
        value = items[name]
        if name.startswith("BODY[HEADER") and isinstance(value, bytes):
            header = bytes(value)
        elif name.startswith("BODY[1]"):
            first = bytes(value) if isinstance(value, bytes) else b""
    defects: list[str] = []
    structure = parse_bodystructure(items.get("BODYSTRUCTURE"), "", defects)  # type: ignore[arg-type]
    date_value = items.get("INTERNALDATE")
    received = internaldate(date_value) if isinstance(date_value, bytes) else None
    return MessageSummary(
        key=MessageKey(folder, validity, int(uid_value)),
        header=header,
        flags=flags,
        size=int(size_value) if isinstance(size_value, bytes) and size_value.isdigit() else 0,
        received=received,
        structure=structure,
        first_section=first,
        defects=tuple(defects),
    )


_INTERNALDATE = re.compile(rb"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$")


def internaldate(value: bytes) -> dt.datetime | None:
    """``17-Jul-1996 02:44:25 -0700`` → an aware datetime (strptime costs more than the rest of a summary)."""
    match = _INTERNALDATE.match(value)
    if match is None:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    month_number = MONTH_NUMBERS.get(month.decode().upper())
    if month_number is None:
        return None
    offset = int(off_h) * 60 + int(off_m)
    try:
        return dt.datetime(
            int(year),
            month_number,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=fixed_zone(-offset if sign == b"-" else offset),
        )
    except ValueError:
        return None
