"""Decoding what mail is made of, never raising on malformed input.

Every function here returns its best reading and, where asked, appends a
human-readable *defect* to a list instead of raising (like the stdlib's
``email`` defects).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as dt
import email.errors
import email.header
import email.utils
import functools
import quopri
import re
from collections.abc import Iterator

__all__ = [
    "MONTH_NUMBERS",
    "StreamDecoder",
    "clean_control",
    "decode_body",
    "decode_text",
    "decode_words",
    "fixed_zone",
    "parse_addresses",
    "parse_date",
]

_CHARSET_ALIASES = {"unknown-8bit": "latin-1", "x-unknown": "latin-1", "ansi_x3.4-1968": "ascii", "cp-850": "cp850"}
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# Text codecs that are not charsets mail is written in: they raise on ordinary bytes, or accept no "replace".
_NOT_MAIL_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "charmap"})


@functools.lru_cache(maxsize=256)
def _lookup(charset: str) -> str | None:
    """The codec for a charset name, or None for an unknown one and for codecs that are not text
    encodings (``rot13``, ``zlib``, ``base64``, ...): mail names them, but they are no charset."""
    name = charset.strip().strip('"').lower()
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):  # ValueError: a NUL in the name
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CHARSETS:
        return None
    return info.name


def _codec(charset: str | None, defects: list[str] | None) -> str:
    found = _lookup(charset or "utf-8")
    if found is None:
        if defects is not None:
            defects.append(f"unknown charset {clean_control(str(charset))[:40]!r}; read as UTF-8")
        return "utf-8"
    return found


def decode_text(data: bytes, charset: str | None, defects: list[str] | None = None) -> str:
    """``data`` as text in ``charset``; undecodable bytes become U+FFFD and a defect."""
    codec = _codec(charset, defects)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        if codec == "ascii":  # a common lie: 8-bit text declared ASCII
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                pass
    except (UnicodeError, ValueError, TypeError):  # a codec that fails in its own way (utf-7 on odd input)
        codec = "utf-8"
    if defects is not None:
        defects.append(f"text is not valid {codec}; undecodable bytes replaced")
    try:
        return data.decode(codec, "replace")
    except (UnicodeError, ValueError, TypeError):
        return data.decode("utf-8", "replace")


def decode_words(value: str, defects: list[str] | None = None) -> str:
    """A header value with folding undone and RFC 2047 encoded words decoded; never raises."""
    if "\n" in value:
        value = _FOLD.sub("", value)
    if "=?" not in value:
        return value
    # by hand, not email.header: three times faster, and raw 8-bit text beside encoded words stays intact
    return _decode_words_by_hand(value, defects)


_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(?<=\?=)[ \t]+(?==\?)")


def _decode_words_by_hand(value: str, defects: list[str] | None) -> str:
    def one(match: re.Match[str]) -> str:
        charset, kind, text = match.group(1).split("*")[0], match.group(2).upper(), match.group(3)
        try:
            data = (
                base64.b64decode(text + "=" * (-len(text) % 4))
                if kind == "B"
                else quopri.decodestring(text.replace("_", " ").encode("ascii"), header=True)
            )
        except (binascii.Error, ValueError, UnicodeEncodeError):
            if defects is not None:
                defects.append("malformed encoded word in header")
            return match.group(0)
        return decode_text(data, charset, defects)

    if "?= " in value or "?=\t" in value:
        value = _BETWEEN_WORDS.sub("", value)
    return _ENCODED_WORD.sub(one, value)


def clean_control(text: str) -> str:
    """Control characters (except tab) replaced by U+FFFD, so a value is safe to show and store."""
    return _CONTROL.sub("\ufffd", text)


_SIMPLE_ADDRESS = re.compile(r"^\s*([^\s<>@,;:()\"\[\]]+@[^\s<>@,;:()\"\[\]]+)\s*$")
_SIMPLE_NAMED = re.compile(r"^\s*([^<>@,;:()\"\[\]\\]*?)\s*<([^\s<>@,;:()\"\[\]]+@[^\s<>@,;:()\"\[\]]+)>\s*$")


def parse_addresses(values: list[str], defects: list[str] | None = None) -> list[tuple[str, str]]:
    """``(name, address)`` pairs from address headers. Parsed first, names decoded after:
    an encoded name may hide a comma (``=?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?=``)."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        simple = _SIMPLE_NAMED.match(value) or _SIMPLE_ADDRESS.match(value)
        if simple is not None:  # the common case, without the full RFC 5322 parser
            name, address = simple.groups() if simple.re is _SIMPLE_NAMED else ("", simple.group(1))
            parsed = [(name, address)]
        else:
            try:
                parsed = email.utils.getaddresses([value])
            except (ValueError, IndexError, RecursionError):  # RecursionError: thousands of nested comments
                parsed = []
                if defects is not None:
                    defects.append("unparseable address header")
        for name, address in parsed:
            if not name and not address:
                continue
            pairs.append((clean_control(decode_words(name, defects)) if name else "", address))
    return pairs


#: ``JAN`` → 1 … ``DEC`` → 12 (dates in headers and IMAP INTERNALDATE).
MONTH_NUMBERS = {
    m: n for n, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)
}
# The RFC 5322 form nearly every client writes; anything else goes to the stdlib's forgiving parser.
_USUAL_DATE = re.compile(
    r"^\s*(?:[A-Za-z]{3},\s*)?(\d{1,2}) ([A-Za-z]{3}) (\d{4}) (\d\d):(\d\d)(?::(\d\d))? ([+-])(\d\d)(\d\d)\s*$",
    re.ASCII,
)


@functools.lru_cache(maxsize=64)
def fixed_zone(minutes: int) -> dt.timezone:
    """The zone ``minutes`` east of UTC, shared (building one costs more than the rest of a date)."""
    return dt.timezone(dt.timedelta(minutes=minutes))


def _usual_date(value: str) -> dt.datetime | None:
    """The date when written in the usual form, else None (the same result as the stdlib, faster)."""
    match = _USUAL_DATE.match(value)
    if match is None:
        return None
    day, month, year, hour, minute, second, sign, off_h, off_m = match.groups()
    number = MONTH_NUMBERS.get(month.upper())
    if number is None:
        return None
    offset = int(off_h) * 60 + int(off_m)
    try:
        # -0000 means "no zone information": taken as UTC, like a naive date
        zone = fixed_zone(-offset if sign == "-" else offset)
        return dt.datetime(int(year), number, int(day), int(hour), int(minute), int(second or 0), tzinfo=zone)
    except ValueError:
        return None  # 31 Feb, hour 24, second 60: the stdlib decides


def parse_date(value: str | None, defects: list[str] | None = None) -> dt.datetime | None:
    """A timezone-aware datetime from a Date header; naive dates are taken as UTC; bad ones are None."""
    if not value:
        return None
    usual = _usual_date(value)
    if usual is not None:
        return usual
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        if defects is not None:
            defects.append(f"unparseable date {value[:60]!r}")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def decode_body(data: bytes, encoding: str, defects: list[str] | None = None) -> bytes:
    """Undo a Content-Transfer-Encoding (base64, quoted-printable; others pass through)."""
    decoder = StreamDecoder(encoding, defects)
    return decoder.feed(data) + decoder.finish()


class StreamDecoder:
    """Undo a transfer encoding chunk by chunk, so attachments can stream to disk."""

    def __init__(self, encoding: str, defects: list[str] | None = None) -> None:
        self.encoding = (encoding or "7bit").strip().lower()
        self._defects = defects
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        if self.encoding == "base64":
            data = self._carry + bytes(data).translate(None, b" \t\r\n")
            usable = len(data) - len(data) % 4
            self._carry = data[usable:]
            return self._b64(data[:usable])
        if self.encoding == "quoted-printable":
            data = self._carry + data
            cut = max(data.rfind(b"\n") + 1, 0)
            if cut == 0 and len(data) < 1 << 20:
                self._carry = data
                return b""
            self._carry = data[cut:]
            return quopri.decodestring(data[:cut])
        return data

    def finish(self) -> bytes:
        rest, self._carry = self._carry, b""
        if self.encoding == "base64" and rest:
            rest = rest.rstrip(b"=")
            return self._b64(rest + b"=" * (-len(rest) % 4))
        if self.encoding == "quoted-printable" and rest:
            return quopri.decodestring(rest)
        return rest

    def _b64(self, data: bytes) -> bytes:
        if not data:
            return b""
        try:
            return base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            if self._defects is not None:
                self._defects.append("invalid base64 data; decoded what could be")
            cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
            cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
            return base64.b64decode(cleaned) if cleaned else b""


def iter_chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
