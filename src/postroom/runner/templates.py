"""Text templates in bot steps: ``"Thank you for invoice {subject_match[1]}"``.

Only named message fields may appear between braces (no attribute access, no indexing
into objects, no format specs), so a template can never reach into Python objects the way
``str.format`` would. ``{{`` and ``}}`` are literal braces. Unknown names are found by
:func:`check_template` when the bot file is checked, not when a message is processed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from postroom.errors import ConfigError

if TYPE_CHECKING:
    from postroom.message.model import Message

__all__ = ["TEMPLATE_FIELDS", "check_template", "render"]


def _first_to(mail: Message) -> str:
    return mail.to[0].address if mail.to else ""


#: The fields a template may name, and how each is read from a message.
TEMPLATE_FIELDS: dict[str, Callable[[Message], object]] = {
    "subject": lambda m: m.subject,
    "from_address": lambda m: m.from_address,
    "from_name": lambda m: m.from_name,
    "to_address": _first_to,
    "message_id": lambda m: m.message_id,
    "key": lambda m: m.key,
    "uid": lambda m: m.uid,
    "folder": lambda m: m.folder,
    "size": lambda m: m.size,
    "received_date": lambda m: m.received_date.isoformat() if m.received_date else "",
    "sent_date": lambda m: m.sent_date.isoformat() if m.sent_date else "",
    "attachment_names": lambda m: ", ".join(m.attachment_names),
    "text": lambda m: m.text,
}

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_MATCH = re.compile(r"subject_match\[(\d+|[A-Za-z_][A-Za-z0-9_]*)\]")


def check_template(field: str, template: str, *, has_match: bool) -> None:
    """Raise a :class:`ConfigError` for ``field`` if ``template`` names what no message has."""
    for found in _FIELD.finditer(template):
        text = found.group(0)
        if text in ("{{", "}}"):
            continue
        name = found.group(1)
        if name is None:
            raise ConfigError(field, f"a lone {text!r} in {template!r}", hint="write {{ or }} for a literal brace")
        if name in TEMPLATE_FIELDS:
            continue
        if _MATCH.fullmatch(name):
            if not has_match:
                raise ConfigError(
                    field,
                    f"{{{name}}} needs the loop's subject to be a regular expression",
                    hint="set loop.regex: true",
                )
            continue
        raise ConfigError(
            field,
            f"{{{name}}} is not a message field",
            hint=f"use one of {', '.join(sorted(TEMPLATE_FIELDS))}, or subject_match[N] (a group of the subject regex)",
        )


def render(template: str, mail: Message, match: re.Match[str] | None) -> str:
    """``template`` with each ``{field}`` replaced by the message's value (as text)."""

    def value(found: re.Match[str]) -> str:
        text = found.group(0)
        if text == "{{":
            return "{"
        if text == "}}":
            return "}"
        name = found.group(1) or ""
        reader = TEMPLATE_FIELDS.get(name)
        if reader is not None:
            return str(reader(mail))
        group = _MATCH.fullmatch(name)
        if group is not None and match is not None:
            wanted = group.group(1)
            try:
                return match.group(int(wanted) if wanted.isdigit() else wanted) or ""
            except IndexError:  # no such group (a numbered one past the last, or a name)
                return ""
        return ""

    return _FIELD.sub(value, template)
