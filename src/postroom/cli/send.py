"""``postroom send``, ``reply`` and ``forward``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from postroom.actions.compose import build_forward, build_message, build_reply
from postroom.actions.send import _sender, forward, reply, send
from postroom.cli.common import filter_options, open_session, require_selection, selected_messages, session_option
from postroom.cli.output import emit, handle_errors, json_option

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
    dry_run: bool,
    as_json: bool,
) -> None:
    """Send a message through the session's SMTP server."""
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


def _respond(
    session_name: str,
    filters: dict[str, Any],
    dry_run: bool,
    as_json: bool,
    verb: str,
    build: Any,
    act: Any,
) -> None:
    require_selection(filters, False, verb)  # never answer a whole folder by accident
    rows = []
    with open_session(session_name) as session:
        _total, items, _loop = selected_messages(session, filters)
        me = None
        for message in list(items):
            if dry_run:
                me = me or _sender(None, session.resolve_login(), session)
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
                receipt = act(session, message)
                rows.append(
                    {
                        "key": str(message.key),
                        "subject": message.subject,
                        "ok": True,
                        "recipients": list(receipt.recipients),
                        "message_id": receipt.message_id,
                    }
                )

    def human() -> None:
        for row in rows:
            click.echo(f"{'would ' + verb if dry_run else verb}: {row['subject']!r} to {', '.join(row['recipients'])}")
        if not rows:
            click.echo("no message matched")

    emit(as_json, {"ok": True, "dry_run": dry_run, "results": rows}, human)


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
        lambda session, message: reply(
            session,
            message,
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
        lambda session, message: forward(
            session, message, list(to), text, as_attachment=as_attachment, save_to_sent=save_to_sent
        ),
    )


COMMANDS = [send_command, reply_command, forward_command]
