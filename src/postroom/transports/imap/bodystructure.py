"""IMAP BODYSTRUCTURE (RFC 3501 §7.4.2) → :class:`~postroom.message.structure.MimePart`."""

from __future__ import annotations

import email.message

from postroom.message.structure import MAX_NESTING, MimePart, cut_off_part, decode_params, header_params
from postroom.transports.imap.response import Value

__all__ = ["parse_bodystructure"]


def _text(value: Value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _pairs(value: Value) -> list[tuple[str, str]]:
    if not isinstance(value, list):
        return []
    items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else "" for v in value]
    return list(zip(items[::2], items[1::2], strict=False))


def _params(value: Value) -> dict[str, str]:
    """A parameter list; the usual single plain parameter (charset, name, boundary) without the general path."""
    if not isinstance(value, list) or not value:
        return {}
    if len(value) == 2:
        name, text = value
        if isinstance(name, bytes) and isinstance(text, bytes) and b"*" not in name:
            return {name.decode("utf-8", "replace").strip().lower(): text.decode("utf-8", "replace")}
    return decode_params(_pairs(value))


def _disposition(value: Value) -> tuple[str | None, dict[str, str]]:
    if value is None:
        return None, {}
    if isinstance(value, bytes) and value:  # some servers (pymap) send the raw header value as one string
        header = email.message.Message()
        header["Content-Disposition"] = _text(value)
        kind = header.get_content_disposition()
        return kind, decode_params(header_params(header, "content-disposition"))
    if not isinstance(value, list) or not value or not isinstance(value[0], bytes):
        return None, {}
    return _text(value[0]).lower(), _params(value[1] if len(value) > 1 else None)


def parse_bodystructure(
    value: Value, section: str = "", defects: list[str] | None = None, *, depth: int = 0
) -> MimePart:
    """The part tree described by a BODYSTRUCTURE value (as tokenised by :mod:`.response`).

    Below :data:`~postroom.message.structure.MAX_NESTING` levels a part is cut off (and ``defects`` says so).
    """
    if not isinstance(value, list) or not value:
        return MimePart(section=section, content_type="text/plain")
    if depth >= MAX_NESTING:
        return cut_off_part(section, defects)
    if isinstance(value[0], list):  # multipart: (part)(part)... "subtype" [params [disposition ...]]
        rest_index = next((i for i, v in enumerate(value) if not isinstance(v, list)), len(value))
        children_values = value[:rest_index]
        rest = value[rest_index:]
        subtype = _text(rest[0]).lower() if rest else "mixed"
        params = _params(rest[1]) if len(rest) > 1 else {}
        disposition, disposition_params = _disposition(rest[2]) if len(rest) > 2 else (None, {})
        prefix = f"{section}." if section else ""
        return MimePart(
            section=section,
            content_type=f"multipart/{subtype}",
            params=params,
            disposition=disposition,
            disposition_params=disposition_params,
            children=tuple(
                parse_bodystructure(child, f"{prefix}{n}", defects, depth=depth + 1)
                for n, child in enumerate(children_values, start=1)
            ),
        )
    # type, subtype, params, id, description, encoding, size [, lines (text) | envelope, body, lines (message)]
    count = len(value)
    maintype = _text(value[0]).lower() or "text"
    subtype = _text(value[1]).lower() if count > 1 else "plain"
    content_type = f"{maintype}/{subtype}"
    params = _params(value[2]) if count > 2 else {}
    content_id = (_text(value[3]) if count > 3 else "") or None
    encoding = (_text(value[5]) if count > 5 else "") or "7bit"
    size_value = value[6] if count > 6 else None
    size = int(size_value) if isinstance(size_value, bytes) and size_value.isdigit() else 0
    children: tuple[MimePart, ...] = ()
    if content_type in {"message/rfc822", "message/global"} and count > 9:
        ext_start = 10  # envelope, body, lines
        inner = value[8]
        inner_section = section or "1"
        if isinstance(inner, list) and inner and isinstance(inner[0], list):
            children = (parse_bodystructure(inner, inner_section, defects, depth=depth + 1),)
        else:
            children = (parse_bodystructure(inner, f"{inner_section}.1", defects, depth=depth + 1),)
    elif maintype == "text":
        ext_start = 8  # lines
    else:
        ext_start = 7
    # extension data: md5, disposition, language, location
    disposition, disposition_params = _disposition(value[ext_start + 1]) if count > ext_start + 1 else (None, {})
    return MimePart(
        section=section,
        content_type=content_type,
        params=params,
        disposition=disposition,
        disposition_params=disposition_params,
        encoding=encoding.lower(),
        size=size,
        content_id=content_id,
        children=children,
    )
