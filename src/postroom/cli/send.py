"""``postroom send``, ``reply`` and ``forward``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from postroom.actions.compose import build_forward, build_message, build_reply
from postroom.actions.send import SendResult, _sender, append, forward, reply, save_draft, send
from postroom.cli.common import filter_options, open_session, require_selection, selected_messages, session_option
from postroom.cli.output import emit, handle_errors, json_option
from postroom.credentials import redact
from postroom.errors import ConfigError
from postroom.message.keys import MessageKey
from postroom.message.model import Message
from postroom.session import Session

__all__ = ["COMMANDS"]


def _body(body: str | None, body_file: Path | None) -> str:
    if body_file is not None:
        return body_file.read_text(encoding="utf-8")
    return body or ""


body_options = [
    click.option("--body", help="Message text."),
    click.option("--body-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Text from a file."),
]


def _with_body(func: Any) -> Any:
    for option in reversed(body_options):
        func = option(func)
    return func


_save_to_sent = click.option(
    "--save-to-sent", is_flag=True, help="Also keep a copy in the Sent folder (IMAP; Sent Items on EWS)."
)


@click.command("send")
@session_option
@click.option("--to", multiple=True, help="Recipients ('a@x; b@y', repeatable).")
@click.option("--cc", multiple=True)
@click.option("--bcc", multiple=True)
@click.option("--reply-to", multiple=True)
@click.option("--subject", default="", help="Subject line.")
@_with_body
@click.option("--html", is_flag=True, help="The body is HTML (a text version is added).")
@click.option("--attach", "attachments", multiple=True, type=click.Path(path_type=Path), help="A file (repeatable).")
@click.option("--importance", type=click.Choice(["low", "normal", "high"]), default="normal", show_default=True)
@click.option("--from", "sender", help="Sender address (default: the session's username).")
@_save_to_sent
@click.option("--draft", "as_draft", is_flag=True, help="Keep it as a draft in the mailbox (Drafts); send nothing.")
@click.option("--dry-run", is_flag=True, help="Check everything and show the message; send nothing.")
@json_option
@handle_errors
def send_command(
    session_name: str,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    reply_to: tuple[str, ...],
    subject: str,
    body: str | None,
    body_file: Path | None,
    html: bool,
    attachments: tuple[Path, ...],
    importance: str,
    sender: str | None,
    save_to_sent: bool,
    as_draft: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Send a message through the session's SMTP server (or, with --draft, keep it unsent in Drafts)."""
    text = _body(body, body_file)
    options: dict[str, Any] = {
        "to": list(to) or None,
        "cc": list(cc) or None,
        "bcc": list(bcc) or None,
        "reply_to": list(reply_to) or None,
        "subject": subject,
        "body": text,
        "html": html,
        "attachments": attachments,
        "importance": importance,
    }
    result: dict[str, Any]
    with open_session(session_name) as session:
        if dry_run:
            draft = build_message(sender=_sender(sender, session.resolve_login(), session), **options)
            result = {
                "ok": True,
                "dry_run": True,
                "from": draft.sender,
                "recipients": draft.recipients,
                "subject": subject,
            }
        elif as_draft:
            kept = save_draft(session, sender=sender, **options)
            result = {
                "ok": True,
                "draft": True,
                "message_id": kept.message_id,
                "folder": kept.folder,
                "recipients": list(kept.recipients),
                "subject": subject,
            }
            emit(as_json, result, lambda: click.echo(f"saved draft {subject!r} in {kept.folder}"))
            return
        else:
            receipt = send(session, sender=sender, save_to_sent=save_to_sent, **options)
            result = {
                "ok": True,
                "message_id": receipt.message_id,
                "from": receipt.sender,
                "recipients": list(receipt.recipients),
                "refused": receipt.refused,
                "subject": subject,
            }
    verb = "would send" if dry_run else "sent"
    line = f"{verb} {subject!r} from {result['from']} to {', '.join(result['recipients'])}"
    emit(as_json, result, lambda: click.echo(line))


@click.command("append")
@session_option
@click.argument("eml", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--folder", "-f", "folder", required=True, help="The folder to store it in.")
@click.option("--unseen", is_flag=True, help="Store it unread.")
@json_option
@handle_errors
def append_command(session_name: str, eml: Path, folder: str, unseen: bool, as_json: bool) -> None:
    """Store the message in file EML (an .eml) in FOLDER as it is, e.g. to restore or import mail."""
    with open_session(session_name) as session:
        message_id = append(session, folder, eml, seen=not unseen)
    emit(
        as_json,
        {"ok": True, "folder": folder, "message_id": message_id},
        lambda: click.echo(f"stored {eml.name} in {folder}"),
    )


def _respond(
    session_name: str,
    filters: dict[str, Any],
    dry_run: bool,
    as_json: bool,
    verb: str,
    build: Any,
    act: Callable[[Session, list[Message]], list[SendResult]],
) -> None:
    """Answer every matching message, carrying on past one that fails; print every result; exit 1 if any failed."""
    require_selection(filters, False, verb, all_flag=False)  # never answer a whole folder by accident
    rows: list[dict[str, Any]] = []
    with open_session(session_name) as session:
        _total, items, _loop = selected_messages(session, filters)
        chosen = list(items)
        if dry_run:
            me = _sender(None, session.resolve_login(), session) if chosen else None
            for message in chosen:
                draft = build(message, me)
                rows.append(
                    {
                        "key": str(message.key),
                        "subject": str(draft.message["Subject"]),
                        "ok": True,
                        "recipients": draft.recipients,
                    }
                )
        else:
            subjects: dict[MessageKey | None, str] = {m.key: m.subject for m in chosen}
            for result in act(session, chosen) if chosen else []:
                receipt = result.receipt
                rows.append(
                    {
                        "key": str(result.key),
                        "subject": subjects.get(result.key, ""),
                        "ok": result.ok,
                        "status": result.status,
                        "sent": result.sent,
                        "recipients": list(receipt.recipients) if receipt else [],
                        "message_id": receipt.message_id if receipt else None,
                        "error": redact(str(result.error)) if result.error is not None else None,
                    }
                )
    failed = [row for row in rows if not row["ok"]]

    def human() -> None:
        for row in rows:
            if dry_run:
                click.echo(f"would {verb}: {row['subject']!r} to {', '.join(row['recipients'])}")
            elif row["ok"]:
                note = f" (but: {row['error']})" if row["error"] else ""
                click.echo(f"{verb}: {row['subject']!r} to {', '.join(row['recipients'])}{note}")
            else:
                click.echo(f"FAILED: {row['key']} {row['subject']!r}: {row['error']} (nothing was sent for it)")
        if not rows:
            click.echo("no message matched")
        elif not dry_run:
            click.echo(f"{_SENT[verb]}: {len(rows) - len(failed)} of {len(rows)}")

    emit(as_json, {"ok": not failed, "dry_run": dry_run, "results": rows}, human)
    if failed:
        raise SystemExit(1)


_SENT = {"reply": "replied", "forward": "forwarded"}


@click.command("reply")
@session_option
@filter_options
@_with_body
@click.option("--all", "reply_all", is_flag=True, help="Reply to all (To and Cc of the original, never yourself).")
@click.option("--html", is_flag=True, help="The body is HTML.")
@click.option("--attach", "attachments", multiple=True, type=click.Path(path_type=Path), help="A file (repeatable).")
@click.option("--no-quote", is_flag=True, help="Do not quote the original text.")
@_save_to_sent
@click.option("--dry-run", is_flag=True, help="Show who would get which reply; send nothing.")
@json_option
@handle_errors
def reply_command(
    session_name: str,
    filters: dict[str, Any],
    body: str | None,
    body_file: Path | None,
    reply_all: bool,
    html: bool,
    attachments: tuple[Path, ...],
    no_quote: bool,
    save_to_sent: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Reply to each matching message."""
    if body is None and body_file is None:
        raise ConfigError(
            "body", "a reply needs its text", hint="give --body TEXT or --body-file FILE; nothing was sent"
        )
    text = _body(body, body_file)
    _respond(
        session_name,
        filters,
        dry_run,
        as_json,
        "reply",
        lambda message, me: build_reply(
            message, sender=me, body=text, reply_all=reply_all, html=html, attachments=attachments, quote=not no_quote
        ),
        lambda session, messages: reply(
            session,
            messages,
            text,
            reply_all=reply_all,
            html=html,
            attachments=attachments,
            quote=not no_quote,
            save_to_sent=save_to_sent,
        ),
    )


@click.command("forward")
@session_option
@click.option("--to", multiple=True, required=True, help="Recipients ('a@x; b@y', repeatable).")
@filter_options
@_with_body
@click.option("--as-attachment", is_flag=True, help="Attach the original as .eml instead of quoting it.")
@_save_to_sent
@click.option("--dry-run", is_flag=True, help="Show what would be forwarded; send nothing.")
@json_option
@handle_errors
def forward_command(
    session_name: str,
    to: tuple[str, ...],
    filters: dict[str, Any],
    body: str | None,
    body_file: Path | None,
    as_attachment: bool,
    save_to_sent: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Forward each matching message, inline with its attachments or as an attached .eml."""
    text = _body(body, body_file)
    _respond(
        session_name,
        filters,
        dry_run,
        as_json,
        "forward",
        lambda message, me: build_forward(message, sender=me, to=list(to), body=text, as_attachment=as_attachment),
        lambda session, messages: forward(
            session, messages, list(to), text, as_attachment=as_attachment, save_to_sent=save_to_sent
        ),
    )


COMMANDS = [send_command, reply_command, forward_command, append_command]
