"""Building outgoing messages: new mail, replies and forwards. Pure: no network here."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import mimetypes
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Literal

from postroom.errors import ConfigError
from postroom.message.filenames import safe_filename
from postroom.message.html_text import html_to_text
from postroom.message.model import Address, Message
from postroom.validation import check_one_line, one_line

__all__ = ["Draft", "Importance", "build_forward", "build_message", "build_reply", "parse_recipients"]

Importance = Literal["low", "normal", "high"]
_IMPORTANCE_HEADERS = {"high": ("high", "1 (Highest)"), "low": ("low", "5 (Lowest)")}
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|vs)\s*:\s*)+", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*((fwd?|wg|tr)\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class Draft:
    """A message ready to send, with its SMTP envelope (Bcc only in the envelope)."""

    message: EmailMessage
    sender: str
    recipients: list[str]


def parse_recipients(field: str, value: str | Iterable[str] | None) -> list[Address]:
    """Addresses from ``"a@x; B <b@y>, c@z"`` or a list; each checked, naming ``field`` when bad."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    found = []
    for item in items:
        check_one_line(field, item, hint="separate addresses with ';' or ','; nothing was sent")
        for name, address in getaddresses([item.replace(";", ",")]):
            if not name and not address:
                continue
            local, at, domain = address.rpartition("@")
            if not at or not local or not domain or " " in address:
                raise ConfigError(field, f"{address or name!r} is not an email address", hint="write name@example.com")
            found.append(Address(name, address))
    return found


def _header_addresses(addresses: Sequence[Address]) -> list[HeaderAddress]:
    out = []
    for address in addresses:
        local, _, domain = address.address.rpartition("@")
        out.append(HeaderAddress(display_name=address.name, username=local, domain=domain))
    return out


def _check_attachments(attachments: Iterable[str | Path]) -> list[Path]:
    paths = [Path(p).expanduser() for p in attachments]
    for path in paths:
        check_one_line("attachments", path.name, hint="rename the file; nothing was sent")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ConfigError("attachments", f"not found: {', '.join(missing)}", hint="nothing was sent")
    return paths


def build_message(
    *,
    sender: str | Address,
    to: str | Iterable[str] | None = None,
    cc: str | Iterable[str] | None = None,
    bcc: str | Iterable[str] | None = None,
    reply_to: str | Iterable[str] | None = None,
    subject: str = "",
    body: str = "",
    html: bool = False,
    attachments: Iterable[str | Path] = (),
    importance: Importance = "normal",
    message_id: str | None = None,
) -> Draft:
    """A new message. Every check (addresses, attachment files) runs before anything is sent.

    ``message_id`` (``<unique@domain>``) replaces the one made up here: a bot's outbox gives a deterministic
    one, so that after a crash the message can be looked for before it is sent again."""
    from_address = sender if isinstance(sender, Address) else _single("sender", sender)
    to_list, cc_list, bcc_list = parse_recipients("to", to), parse_recipients("cc", cc), parse_recipients("bcc", bcc)
    if not (to_list or cc_list or bcc_list):
        raise ConfigError("to", "no recipient", hint="give at least one address in to, cc or bcc")
    check_one_line("subject", subject, hint="give the subject on one line; nothing was sent")
    if importance not in ("low", "normal", "high"):
        raise ConfigError("importance", f"{importance!r} is not supported", hint="choose low, normal or high")
    paths = _check_attachments(attachments)
    message = EmailMessage()
    message["From"] = _header_addresses([from_address])
    if to_list:
        message["To"] = _header_addresses(to_list)
    if cc_list:
        message["Cc"] = _header_addresses(cc_list)
    replies = parse_recipients("reply_to", reply_to)
    if replies:
        message["Reply-To"] = _header_addresses(replies)
    message["Subject"] = subject
    message["Date"] = format_datetime(dt.datetime.now(dt.UTC))
    message["Message-ID"] = (
        _checked_message_id(message_id)
        if message_id
        else make_msgid(domain=from_address.address.rpartition("@")[2] or None)
    )
    if importance in _IMPORTANCE_HEADERS:
        message["Importance"], message["X-Priority"] = _IMPORTANCE_HEADERS[importance]
    if html:
        message.set_content(html_to_text(body))
        message.add_alternative(body, subtype="html")
    else:
        message.set_content(body)
    for path in paths:
        ctype, encoding = mimetypes.guess_type(path.name)
        maintype, subtype = (
            (ctype or "application/octet-stream").split("/", 1) if not encoding else ("application", "octet-stream")
        )
        message.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
    envelope = [a.address for a in (*to_list, *cc_list, *bcc_list)]
    return Draft(message, from_address.address, list(dict.fromkeys(envelope)))


def _checked_message_id(value: str) -> str:
    if not re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", value):
        raise ConfigError("message_id", f"{value!r} is not a Message-ID", hint="write it as <unique@domain>")
    return value


def _single(field: str, value: str) -> Address:
    found = parse_recipients(field, value)
    if len(found) != 1:
        raise ConfigError(field, f"{value!r} must be exactly one address")
    return found[0]


def _quoted(original: Message) -> str:
    when = original.sent_date.strftime("%a, %d %b %Y %H:%M") if original.sent_date else "an earlier date"
    who = str(original.from_) if original.from_ else "the sender"
    lines = original.text.splitlines() or [""]
    return f"On {when}, {who} wrote:\n" + "\n".join(f"> {line}" if line else ">" for line in lines) + "\n"


def build_reply(
    original: Message,
    *,
    sender: Address,
    body: str,
    reply_all: bool = False,
    html: bool = False,
    attachments: Iterable[str | Path] = (),
    quote: bool = True,
    own_addresses: Iterable[str] = (),
    message_id: str | None = None,
) -> Draft:
    """A reply: to Reply-To (else From); reply-all adds To and Cc, never ourselves; one ``Re:``; threaded."""
    to = original.reply_to or ([original.from_] if original.from_ else [])
    mine = {a.casefold() for a in (sender.address, *own_addresses)}
    cc: list[Address] = []
    if reply_all:
        taken = {a.address.casefold() for a in to}
        for address in (*original.to, *original.cc):
            key = address.address.casefold()
            if key not in mine and key not in taken:
                cc.append(address)
                taken.add(key)
    to = [a for a in to if a.address.casefold() not in mine] or to
    subject = "Re: " + one_line(_REPLY_PREFIX.sub("", original.subject))  # mail's text: cleaned, not refused
    text = body + ("\n\n" + _quoted(original) if quote else "")
    draft = build_message(
        sender=sender,
        to=[one_line(str(a)) for a in to],
        cc=[one_line(str(a)) for a in cc] or None,
        subject=subject,
        body=text
        if not html
        else body + ("<br><br><blockquote>" + _escape(_quoted(original)) + "</blockquote>" if quote else ""),
        html=html,
        attachments=attachments,
        message_id=message_id,
    )
    if original.message_id:
        draft.message["In-Reply-To"] = original.message_id
        draft.message["References"] = " ".join([*original.references, original.message_id])
    return draft


def _escape(text: str) -> str:
    import html as html_module

    return html_module.escape(text).replace("\n", "<br>")


def build_forward(
    original: Message,
    *,
    sender: Address,
    to: str | Iterable[str],
    body: str = "",
    cc: str | Iterable[str] | None = None,
    bcc: str | Iterable[str] | None = None,
    as_attachment: bool = False,
    message_id: str | None = None,
) -> Draft:
    """A forward: inline (original text quoted, its attachments re-attached) or the original as an attached ``.eml``."""
    subject = "Fwd: " + one_line(_FORWARD_PREFIX.sub("", original.subject))
    if as_attachment:
        text = body
    else:
        header = [
            "---------- Forwarded message ----------",
            f"From: {original.from_ or ''}",
            f"Date: {original.sent_date.strftime('%a, %d %b %Y %H:%M %z') if original.sent_date else ''}",
            f"Subject: {original.subject}",
            f"To: {', '.join(str(a) for a in original.to)}",
        ]
        text = (body + "\n\n" if body else "") + "\n".join(header) + "\n\n" + original.text
    draft = build_message(sender=sender, to=to, cc=cc, bcc=bcc, subject=subject, body=text, message_id=message_id)
    if as_attachment:
        attached = email.message_from_bytes(original.raw(), policy=email.policy.default)
        draft.message.add_attachment(
            attached, filename=safe_filename(original.subject, "forwarded", from_text=True) + ".eml"
        )
    else:
        for part in original.attachments():
            maintype, _, subtype = part.content_type.partition("/")
            name = one_line(part.filename or ("message.eml" if part.is_message else f"attachment-{part.fetch_section}"))
            content = original.part_content(part)
            if part.is_message:
                inner = email.message_from_bytes(content, policy=email.policy.default)
                draft.message.add_attachment(inner, filename=name)
            else:
                draft.message.add_attachment(
                    content, maintype=maintype, subtype=subtype or "octet-stream", filename=name
                )
    return draft
