"""Characters XML 1.0 cannot carry, in EWS replies and requests.

Exchange writes a subject holding, say, U+0001 as the character reference ``&#x1;``,
which XML 1.0 forbids; strict parsers stop there (the failure our users know from
other RPA suites), and lxml's recovering parser either keeps the raw control
character or, for a lone surrogate, raises when the text is read. postroom cleans
each reply *before* it is parsed: every such reference or raw character becomes a
marker (U+10FFFD, a private-use character that is valid XML and never found in
mail), and :func:`clean_text` turns each marker into a visible U+FFFD and reports
that it did, so the message can record a defect. Outgoing text goes through
:func:`replace_invalid` the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = ["INVALID_XML_CHARS", "MARKER", "clean_text", "replace_invalid", "sanitize_stream"]

#: Stands in for a removed character between parsing and :func:`clean_text`.
MARKER = "\U0010fffd"
_MARKER_REF = b"&#x10FFFD;"

#: C0 controls other than TAB/LF/CR, surrogates, U+FDD0–U+FDEF and every U+xFFFE/U+xFFFF non-character.
INVALID_XML_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17))
    + "]"
)

_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9a-fA-F]{1,8})|([0-9]{1,10}));")
# Raw bytes that decode to such characters: C0 controls, UTF-8 of surrogates (ED A0-BF ..),
# of U+FDD0-U+FDEF (EF B7 90-AF), of U+FFFE/FFFF (EF BF BE/BF) and of U+nFFFE/nFFFF.
_RAW_INVALID = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f]|\xed[\xa0-\xbf][\x80-\xbf]|\xef\xb7[\x90-\xaf]|\xef\xbf[\xbe\xbf]"
    rb"|[\xf0-\xf4][\x8f\x9f\xaf\xbf]\xbf[\xbe\xbf]"
)


def _is_invalid(code: int) -> bool:
    return code > 0x10FFFF or bool(INVALID_XML_CHARS.match(chr(code)))


def _reference(match: re.Match[bytes]) -> bytes:
    hex_digits, decimal = match.groups()
    code = int(hex_digits, 16) if hex_digits else int(decimal)
    return _MARKER_REF if _is_invalid(code) else match.group()


def _sanitize(data: bytes) -> bytes:
    if b"&#" in data:
        data = _CHAR_REF.sub(_reference, data)
    return _RAW_INVALID.sub(_MARKER_REF, data)


def _safe_cut(buffer: bytes) -> int:
    """Where ``buffer`` can be cut without splitting a character reference or a UTF-8 sequence."""
    cut = len(buffer)
    amp = buffer.rfind(b"&", max(0, cut - 16))
    if amp != -1 and b";" not in buffer[amp:]:
        cut = amp
    while cut > 0 and len(buffer) - cut < 4 and buffer[cut - 1] >= 0x80:
        cut -= 1
    return cut


def sanitize_stream(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The reply's bytes with every XML-invalid character (raw or as a reference) replaced by the marker."""
    pending = b""
    for chunk in chunks:
        buffer = pending + chunk
        cut = _safe_cut(buffer)
        pending = buffer[cut:]
        if cut:
            yield _sanitize(buffer[:cut])
    if pending:
        yield _sanitize(pending)


def clean_text(value: str | None) -> tuple[str, int]:
    """A parsed value with each removed character shown as U+FFFD, and how many there were."""
    if not value:
        return value or "", 0
    count = value.count(MARKER)
    invalid = INVALID_XML_CHARS.findall(value)  # raw ones that reached us some other way
    if not count and not invalid:
        return value, 0
    text = INVALID_XML_CHARS.sub("\ufffd", value.replace(MARKER, "\ufffd"))
    return text, count + len(invalid)


def replace_invalid(value: str) -> str:
    """Outgoing text with each character XML cannot carry replaced by U+FFFD."""
    return INVALID_XML_CHARS.sub("\ufffd", value)
