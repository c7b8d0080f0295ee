"""One FETCH response of the loop → a :class:`~postroom.message.summary.MessageSummary`.

Most responses to the loop's request look alike: items in the order asked for,
nothing quoted with escapes, and a single part or one multipart of plain leaves
(text and its HTML alternative, text and an attachment). :func:`summary_of_response`
reads that shape with a few regexes (a third of the time tokenizing takes) and
hands anything else, however slightly different, to the general tokenizer and
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
#: A plain parameter list of one pair, or NIL: (name value), the name without RFC 2231's ``*``.
_ONE_PARAM = rb'(?:NIL|\("([^"\\*]*)" "([^"\\]*)"\))'
# A leaf part with at most one plain parameter, no MD5, language or location, and a disposition of at most one
# plain parameter: (type subtype params id description encoding size [lines] NIL disposition NIL NIL)
_LEAF = re.compile(
    rb"\("
    + _QUOTED
    + rb" "
    + _QUOTED
    + rb" "
    + _ONE_PARAM
    + rb" "
    + _NIL_OR_QUOTED
    + rb" "
    + _NIL_OR_QUOTED
    + rb" "
    + _QUOTED
    + rb' (\d+)( \d+)? NIL (?:NIL|\("([^"\\]*)" '
    + _ONE_PARAM
    + rb"\)) NIL NIL\)",
    re.IGNORECASE,
)
# What follows a multipart's leaves: subtype, one plain parameter (the boundary), no disposition, language or location.
_MULTIPART_TAIL = re.compile(rb" " + _QUOTED + rb" " + _ONE_PARAM + rb" NIL NIL NIL\)$", re.IGNORECASE)
# A flag the tokenizer reads as the same atom (not NIL; no brackets, quotes or parentheses).
# Exactly one space between flags keeps the pattern linear (no backtracking blow-up).
_FLAG = rb"(?!NIL\b)[A-Za-z0-9\\$_.+-]+"
# The loop's request answered in the order asked, up to the header fields' literal; the BODYSTRUCTURE is read
# by _usual_structure.
_USUAL_RESPONSE = re.compile(
    rb"\(UID (\d+) FLAGS \((" + _FLAG + rb"(?: " + _FLAG + rb")*)?\) RFC822\.SIZE (\d+) "
    rb'INTERNALDATE "([^"\\]*)" BODYSTRUCTURE (\(.*\)) BODY\[HEADER\.FIELDS \([^()]*\)\] $',
    re.IGNORECASE,
)
_END = b")\r\n"
_FIRST_SECTION = b" BODY[1]<0> "
#: Leaves of a multipart the fast path reads (more is rare, and goes the general way).
_MAX_LEAVES = 8


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _one_param(name: bytes | None, value: bytes | None) -> dict[str, str]:
    return {} if name is None or value is None else {_text(name).strip().lower(): _text(value)}


def _leaf(match: re.Match[bytes], section: str) -> MimePart | None:
    """The part one :data:`_LEAF` match describes, as :func:`parse_bodystructure` reads it; None where that reading
    depends on more than the match shows (an attached message; a text part without its line count, or another
    part with one, which moves where the disposition is read)."""
    maintype, subtype, name, value, content_id, _description, encoding, size, lines, kind, d_name, d_value = (
        match.groups()
    )
    main = _text(maintype).lower() or "text"
    if main == "message" or (lines is not None) != (main == "text"):
        return None
    return MimePart(
        section=section,
        content_type=f"{main}/{_text(subtype).lower()}",
        params=_one_param(name, value),
        disposition=_text(kind).lower() if kind is not None else None,
        disposition_params=_one_param(d_name, d_value),
        encoding=(_text(encoding) or "7bit").lower(),
        size=int(size),
        content_id=None if content_id.upper() == b"NIL" else _text(content_id[1:-1]) or None,
    )


def _usual_structure(text: bytes) -> MimePart | None:
    """The usual BODYSTRUCTUREs without the tokenizer: a single part, or one multipart of up to
    :data:`_MAX_LEAVES` leaves (text and alternative, text and an attachment); None for anything else."""
    if not text.startswith(b"(("):
        match = _LEAF.fullmatch(text)
        return _leaf(match, "") if match is not None else None
    children: list[MimePart] = []
    position = 1
    while text.startswith(b"(", position) and len(children) < _MAX_LEAVES:
        match = _LEAF.match(text, position)
        if match is None:
            return None
        child = _leaf(match, str(len(children) + 1))
        if child is None:
            return None
        children.append(child)
        position = match.end()
    tail = _MULTIPART_TAIL.match(text, position)
    if not children or tail is None:
        return None
    subtype, name, value = tail.groups()
    return MimePart(
        section="",
        content_type=f"multipart/{_text(subtype).lower()}",
        params=_one_param(name, value),
        children=tuple(children),
    )


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
    uid, flags, size, date, structure_text = match.groups()
    structure = _usual_structure(structure_text)
    if structure is None:
        return None
    return MessageSummary(
        key=ImapKey(folder, validity, int(uid)),
        header=bytes(parts[1]),
        flags=frozenset([flag.decode("ascii") for flag in flags.split(b" ")]) if flags else frozenset(),
        size=int(size),
        received=internaldate(date),
        structure=structure,
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
