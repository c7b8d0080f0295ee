"""A fast, forgiving reader for a block of header fields (what IMAP ``HEADER.FIELDS`` returns).

The stdlib's feed parser is built for whole messages and costs more than the rest
of a loop; a header block needs only line unfolding. Raw 8-bit values are read as
UTF-8 (as ``email.policy.default`` does), with a defect when they are not.
"""

from __future__ import annotations

import re

__all__ = ["HeaderBlock", "header_length", "split_header_block"]

_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.MULTILINE)
_FIELD_TEXT = re.compile(_FIELD.pattern.decode("ascii"), re.MULTILINE)
_FOLD = re.compile(r"\r?\n(?=[ \t])")


class HeaderBlock:
    """Header fields in order; lookups are case-insensitive."""

    __slots__ = ("_by_name", "fields")

    def __init__(self, fields: list[tuple[str, str]]) -> None:
        self.fields = fields
        self._by_name: dict[str, list[str]] = {}
        for name, value in fields:
            self._by_name.setdefault(name.lower(), []).append(value)

    def get(self, name: str) -> str | None:
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        return self._by_name.get(name.lower(), [])


def split_header_block(data: bytes, defects: list[str] | None = None) -> HeaderBlock:
    """The fields of a header block, values unfolded and decoded to text (encoded words kept)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    block = data if end < 0 else data[:end]
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:  # the usual case: one decode, one findall, unfold only what is folded
        return HeaderBlock(
            [
                (name, (_FOLD.sub("", value) if "\n" in value else value).rstrip("\r\n"))
                for name, value in _FIELD_TEXT.findall(text)
            ]
        )
    fields = []
    for match in _FIELD.finditer(block):
        raw = match.group(2)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError:
            value = raw.decode("utf-8", "replace")
            if defects is not None:
                defects.append(f"header {match.group(1).decode('ascii', 'replace')} is not valid UTF-8")
        fields.append((match.group(1).decode("ascii"), _FOLD.sub("", value).rstrip("\r\n")))
    return HeaderBlock(fields)


def header_length(raw: bytes) -> int | None:
    """The length of ``raw``'s header section with the line ending it (up to the first empty line, CRLF or LF),
    or None when it has no empty line."""
    crlf = raw.find(b"\r\n\r\n")
    lf = raw.find(b"\n\n", 0, len(raw) if crlf < 0 else crlf + 1)  # only before it: no second scan of the body
    if lf >= 0:
        return lf + 1
    return None if crlf < 0 else crlf + 2
