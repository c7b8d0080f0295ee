"""One FETCH response of the loop → a :class:`~postroom.message.summary.MessageSummary`.

Most responses to the loop's request look alike: a single-part message, items in
the order asked for, nothing quoted with escapes. :func:`summary_of_response`
reads that shape with one regex (twice as fast as tokenizing it) and hands
anything else, however slightly different, to the general tokenizer and
:func:`summary_from`. Both give equal summaries: ``test_imap_parsing`` checks
that on every response shape it can make.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from postroom.message.decode import MONTH_NUMBERS, fixed_zone
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.imap.bodystructure import parse_bodystructure
from postroom.transports.imap.keys import ImapKey
from postroom.transports.imap.response import FetchItems, Literal, items_of

__all__ = ["internaldate", "summary_from", "summary_of_response", "summary_or_items"]

_QUOTED = rb'"([^"\\]*)"'
_NIL_OR_QUOTED = rb'(NIL|"[^"\\]*")'
# A single-part body whose extension data is all NIL, with at most one plain parameter:
# (type subtype (name value)|NIL id description encoding size [lines] NIL NIL NIL NIL)
_SINGLE_PART = (
    rb"\("
    + _QUOTED
    + rb" "
    + _QUOTED
    + rb' (?:NIL|\("([^"\\*]*)" "([^"\\]*)"\)) '
    + _NIL_OR_QUOTED
    + rb" "
    + _NIL_OR_QUOTED
    + rb" "
    + _QUOTED
    + rb" (\d+)(?: \d+)? NIL NIL NIL NIL\)"
)
# A flag the tokenizer reads as the same atom (not NIL; no brackets, quotes or parentheses).
# Exactly one space between flags keeps the pattern linear (no backtracking blow-up).
_FLAG = rb"(?!NIL\b)[A-Za-z0-9\\$_.+-]+"
# The loop's request answered in the order asked, up to the header fields' literal.
_USUAL_RESPONSE = re.compile(
    rb"\(UID (\d+) FLAGS \((" + _FLAG + rb"(?: " + _FLAG + rb")*)?\) RFC822\.SIZE (\d+) "
    rb'INTERNALDATE "([^"\\]*)" BODYSTRUCTURE ' + _SINGLE_PART + rb" BODY\[HEADER\.FIELDS \([^()]*\)\] $",
    re.IGNORECASE,
)
_END = b")\r\n"
_FIRST_SECTION = b" BODY[1]<0> "


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def summary_of_response(parts: list[bytes | Literal], folder: str, validity: int) -> MessageSummary | None:
    """The summary in one FETCH response (its text and literals from the ``(``), by the fast path when it can."""
    usual = _usual_summary(parts, folder, validity)
    return usual if usual is not None else summary_from(items_of(parts), folder, validity)


def summary_or_items(parts: list[bytes | Literal], folder: str, validity: int) -> MessageSummary | FetchItems:
    """One FETCH response read by what it holds: the summary when it carries a BODYSTRUCTURE (an answer to
    the loop's request), else its items (a body section, or flags the server reported on its own)."""
    usual = _usual_summary(parts, folder, validity)
    if usual is not None:
        return usual
    items = items_of(parts)
    if "BODYSTRUCTURE" not in items:
        return items
    return summary_from(items, folder, validity) or items


def _usual_summary(parts: list[bytes | Literal], folder: str, validity: int) -> MessageSummary | None:
    """The summary by the fast path, or None when the response is not of the usual shape."""
    match = _USUAL_RESPONSE.match(parts[0]) if len(parts) in (3, 5) and parts[-1] == _END else None
    if match is None or (len(parts) == 5 and parts[2] != _FIRST_SECTION):
        return None
    uid, flags, size, date, maintype, subtype, param, value, content_id, _description, encoding, part_size = (
        match.groups()
    )
    if maintype.lower() == b"message":  # an attached message's leaf carries more than this shape reads
        return None
    part = MimePart(
        section="",
        content_type=f"{_text(maintype).lower() or 'text'}/{_text(subtype).lower()}",
        params={} if param is None else {_text(param).strip().lower(): _text(value)},
        encoding=(_text(encoding) or "7bit").lower(),
        size=int(part_size),
        content_id=None if content_id.upper() == b"NIL" else _text(content_id[1:-1]) or None,
    )
    return MessageSummary(
        key=ImapKey(folder, validity, int(uid)),
        header=bytes(parts[1]),
        flags=frozenset([flag.decode("ascii") for flag in flags.split(b" ")]) if flags else frozenset(),
        size=int(size),
        received=internaldate(date),
        structure=part,
        body_start=bytes(parts[3]) if len(parts) == 5 else None,
    )


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
        key=ImapKey(folder, validity, int(uid_value)),
        header=header,
        flags=flags,
        size=int(size_value) if isinstance(size_value, bytes) and size_value.isdigit() else 0,
        received=received,
        structure=structure,
        body_start=first,
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
