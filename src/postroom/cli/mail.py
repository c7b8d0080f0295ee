"""The action commands: folders, list, save-attachments, save, move, delete, mark."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from postroom.actions import (
    add_flags,
    create_folder,
    delete_folder,
    mark_read,
    mark_unread,
    move,
    remove_flags,
    rename_folder,
    save_attachments,
    save_email,
)
from postroom.actions import delete as delete_messages
from postroom.actions import folders as list_folders
from postroom.actions.loop import get_message
from postroom.actions.save import attachment_file_name, name_matches
from postroom.cli.common import (
    filter_options,
    open_session,
    require_selection,
    selected_messages,
    session_option,
    with_progress,
)
from postroom.cli.output import emit, handle_errors, json_option, terminal_text
from postroom.errors import ConfigError
from postroom.message.model import Message
from postroom.transports.contract import ItemResult, check_flag_names

__all__ = ["COMMANDS"]


def _row(message: Message) -> dict[str, Any]:
    return {
        "key": str(message.key),
        "received": message.received_date.isoformat(timespec="minutes") if message.received_date else None,
        "from": str(message.from_) if message.from_ else "",
        "subject": message.subject,
        "attachments": message.attachment_names,
        "seen": message.seen,
        "size": message.size,
    }


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A table on a terminal; tab-separated lines when piped (for grep and cut). What mail says is shown as
    text, never obeyed: no rich markup, and every control character as its escape (a tab cannot add a column)."""
    if not sys.stdout.isatty():
        for row in rows:
            click.echo("\t".join(_cell(row.get(column)) for column in columns))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False)
    for column in columns:  # the key is what --key takes: folded, never cut
        table.add_column(column, overflow="fold" if column == "key" else "ellipsis")
    for row in rows:
        table.add_row(*(Text(_cell(row.get(column))) for column in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(terminal_text(str(v)) for v in value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return terminal_text(str(value))


@click.command("folders")
@session_option
@json_option
@handle_errors
def folders_command(session_name: str, as_json: bool) -> None:
    """List the folders of a session."""
    with open_session(session_name) as session:
        found = list_folders(session)
    data = [
        {
            "name": f.name,  # levels always separated by "/"
            "delimiter": f.delimiter,  # the server's own separator, as it gave it
            "special_use": next((flag for flag in f.flags if flag in _SPECIAL_USE), None),
            "flags": list(f.flags),
        }
        for f in found
    ]

    def human() -> None:
        for folder in sorted(found, key=lambda f: f.name):
            click.echo(terminal_text(folder.name))

    emit(as_json, {"folders": data}, human)


#: RFC 6154 special-use attributes (and Gmail's \\Important).
_SPECIAL_USE = frozenset({"\\ALL", "\\ARCHIVE", "\\DRAFTS", "\\FLAGGED", "\\JUNK", "\\SENT", "\\TRASH", "\\IMPORTANT"})


@click.command("create-folder")
@session_option
@click.argument("folder")
@json_option
@handle_errors
def create_folder_command(session_name: str, folder: str, as_json: bool) -> None:
    """Create FOLDER ('Processed/2026': the levels above come too); an existing one is fine."""
    with open_session(session_name) as session:
        made = create_folder(session, folder)
    emit(as_json, {"ok": True, "folder": made.name}, lambda: click.echo(f"folder {made.name!r} is there"))


@click.command("rename-folder")
@session_option
@click.argument("folder")
@click.argument("new_name")
@json_option
@handle_errors
def rename_folder_command(session_name: str, folder: str, new_name: str, as_json: bool) -> None:
    """Rename FOLDER to NEW_NAME ('Archive/2026' moves it under Archive), with its subfolders and mail."""
    with open_session(session_name) as session:
        renamed = rename_folder(session, folder, new_name)
    emit(
        as_json,
        {"ok": True, "folder": folder, "renamed_to": renamed.name},
        lambda: click.echo(f"renamed {terminal_text(folder)!r} to {terminal_text(renamed.name)!r}"),
    )


@click.command("delete-folder")
@session_option
@click.argument("folder")
@click.option("--force", is_flag=True, help="Also delete the messages and subfolders it holds.")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted; delete nothing.")
@json_option
@handle_errors
def delete_folder_command(session_name: str, folder: str, force: bool, dry_run: bool, as_json: bool) -> None:
    """Delete FOLDER for good; one holding messages or subfolders only with --force."""
    with open_session(session_name) as session:
        names = delete_folder(session, folder, force=force, dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    emit(
        as_json,
        {"ok": True, "dry_run": dry_run, "deleted" if not dry_run else "would_delete": names},
        lambda: click.echo(f"{verb}: {', '.join(terminal_text(n) for n in names) or 'nothing'}"),
    )


@click.command("list")
@session_option
@filter_options
@click.option("--bodies", is_flag=True, help="Include text and HTML bodies (JSON only; fetches them).")
@json_option
@handle_errors
def list_command(session_name: str, filters: dict[str, Any], bodies: bool, as_json: bool) -> None:
    """List the messages that match (headers only: no body is downloaded unless --bodies)."""
    if bodies and not as_json:
        raise ConfigError(
            "bodies",
            "--bodies needs --json",
            hint="a table has no room for bodies: add --json, or use `postroom show KEY`",
        )
    with open_session(session_name) as session:
        total, items, loop = selected_messages(session, filters)
        rows = []
        for message in with_progress(total, items, loop, "listing", as_json):
            rows.append(dict(message.properties(with_bodies=bodies)) if as_json else _row(message))
    emit(
        as_json,
        {"messages": rows, "count": len(rows)},
        lambda: _table(rows, ["key", "received", "from", "subject", "attachments"]),
    )


_PAST = {"save": "saved", "move": "moved", "delete": "deleted", "mark": "marked"}


def _results(as_json: bool, verb: str, results: list[dict[str, Any]], dry_run: bool) -> None:
    """Print one line per message and a count; exit 1 when any message failed."""
    done = sum(1 for r in results if r.get("ok"))

    def human() -> None:
        for result in results:
            mark = "would" if dry_run else ("ok" if result.get("ok") else "FAILED")
            click.echo(f"{mark}: {result['key']} {result.get('subject', '')!r} {result.get('detail', '')}".rstrip())
        summary = f"would {verb}" if dry_run else _PAST[verb]
        click.echo(f"{summary}: {len(results) if dry_run else done} of {len(results)}")

    emit(as_json, {"ok": dry_run or done == len(results), "dry_run": dry_run, "results": results}, human)
    if not dry_run and done != len(results):
        raise SystemExit(1)


@click.command("save-attachments")
@session_option
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@filter_options
@click.option("--overwrite", is_flag=True, help="Replace files of the same name (default: keep both).")
@click.option("--pattern", help="Only file names matching this glob, e.g. '*.pdf'.")
@click.option("--inline", "include_inline", is_flag=True, help="Also inline parts such as embedded images.")
@click.option("--nested", "include_nested", is_flag=True, help="Also the attachments of attached emails.")
@click.option("--dry-run", is_flag=True, help="Show what would be saved; write nothing.")
@json_option
@handle_errors
def save_attachments_command(
    session_name: str,
    dest: Path,
    filters: dict[str, Any],
    overwrite: bool,
    pattern: str | None,
    include_inline: bool,
    include_nested: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Save the attachments of the matching messages into folder DEST (names made safe; streamed)."""
    results = []
    with open_session(session_name) as session:
        total, items, loop = selected_messages(session, filters)
        for message in with_progress(total, items, loop, "saving", as_json):
            if dry_run:
                parts = message.attachments(include_inline=include_inline)
                names = [n for n in map(attachment_file_name, parts) if name_matches(n, pattern)]
                results.append(
                    {"key": str(message.key), "subject": message.subject, "ok": True, "detail": ", ".join(names)}
                )
                continue
            saved = save_attachments(
                message,
                dest,
                overwrite=overwrite,
                pattern=pattern,
                include_inline=include_inline,
                include_nested=include_nested,
            )
            results.append(
                {
                    "key": str(message.key),
                    "subject": message.subject,
                    "ok": True,
                    "files": [str(s.path) for s in saved],
                    "detail": ", ".join(s.path.name for s in saved),
                }
            )
    _results(as_json, "save", results, dry_run)


@click.command("save")
@session_option
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@filter_options
@click.option("--overwrite", is_flag=True, help="Replace a file of the same name.")
@click.option("--dry-run", is_flag=True, help="Show what would be saved; write nothing.")
@json_option
@handle_errors
def save_command(
    session_name: str, dest: Path, filters: dict[str, Any], overwrite: bool, dry_run: bool, as_json: bool
) -> None:
    """Save the matching messages as .eml files in folder DEST, byte for byte."""
    results = []
    if not dry_run:
        dest.mkdir(parents=True, exist_ok=True)
    with open_session(session_name) as session:
        total, items, loop = selected_messages(session, filters)
        for message in with_progress(total, items, loop, "saving", as_json):
            entry = {"key": str(message.key), "subject": message.subject, "ok": True}
            if not dry_run:
                path = save_email(message, dest, overwrite=overwrite)
                entry.update(file=str(path), detail=path.name)
            results.append(entry)
    _results(as_json, "save", results, dry_run)


def _apply(session_name: str, filters: dict[str, Any], dry_run: bool, as_json: bool, verb: str, act: Any) -> None:
    with open_session(session_name) as session:
        total, items, loop = selected_messages(session, filters)
        chosen = list(with_progress(total, items, loop, "selecting", as_json))
        subjects = {m.key: m.subject for m in chosen}
        if dry_run:
            rows = [{"key": str(m.key), "subject": m.subject, "ok": True} for m in chosen]
        else:
            outcome: list[ItemResult] = act(session, chosen) if chosen else []
            rows = [
                {
                    "key": str(r.key),
                    "subject": subjects.get(r.key, ""),
                    "ok": r.ok,
                    "status": r.status,
                    "detail": r.detail,
                    "new_key": str(r.new_key) if r.new_key else None,
                    "error": str(r.error) if r.error is not None else None,
                }
                for r in outcome
            ]
    _results(as_json, verb, rows, dry_run)


@click.command("move")
@session_option
@click.option("--to", "target", required=True, metavar="FOLDER", help="Destination folder, e.g. 'Processed'.")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Allow moving every message of the folder.")
@click.option("--allow-expunge-all", is_flag=True, help="On servers without MOVE/UIDPLUS, accept a plain EXPUNGE.")
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@json_option
@handle_errors
def move_command(
    session_name: str,
    target: str,
    filters: dict[str, Any],
    everything: bool,
    allow_expunge_all: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Move the matching messages to another folder (server-side, by UID)."""
    require_selection(filters, everything, "move")
    _apply(
        session_name,
        filters,
        dry_run,
        as_json,
        "move",
        lambda s, chosen: move(s, chosen, target, allow_expunge_all=allow_expunge_all),
    )


@click.command("delete")
@session_option
@filter_options
@click.option("--all", "everything", is_flag=True, help="Allow deleting every message of the folder.")
@click.option("--allow-expunge-all", is_flag=True, help="On servers without UIDPLUS, accept a plain EXPUNGE.")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; change nothing.")
@json_option
@handle_errors
def delete_command(
    session_name: str, filters: dict[str, Any], everything: bool, allow_expunge_all: bool, dry_run: bool, as_json: bool
) -> None:
    """Delete the matching messages for good."""
    require_selection(filters, everything, "delete")
    _apply(
        session_name,
        filters,
        dry_run,
        as_json,
        "delete",
        lambda s, chosen: delete_messages(s, chosen, allow_expunge_all=allow_expunge_all),
    )


_FLAG_WORDS = {"flagged": "\\Flagged", "answered": "\\Answered", "draft": "\\Draft"}


@click.command("mark")
@session_option
@click.option("--read/--unread", "read", default=None, help="Mark read or unread.")
@click.option(
    "--flag", "add", multiple=True, metavar="FLAG", help="Add a flag: flagged, answered, draft, or a keyword."
)
@click.option("--unflag", "remove", multiple=True, metavar="FLAG", help="Remove a flag (as --flag).")
@filter_options
@click.option("--all", "everything", is_flag=True, help="Allow marking every message of the folder.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@json_option
@handle_errors
def mark_command(
    session_name: str,
    read: bool | None,
    add: tuple[str, ...],
    remove: tuple[str, ...],
    filters: dict[str, Any],
    everything: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Mark the matching messages read or unread, or add or remove a flag (--flag flagged, a keyword)."""
    asked = [bool(read is not None), bool(add), bool(remove)]
    if sum(asked) != 1:
        raise ConfigError("mark", "give one change per command", hint="--read, --unread, --flag FLAG or --unflag FLAG")
    flags = tuple(_FLAG_WORDS.get(name.lower(), name) for name in (add or remove))
    if flags:
        check_flag_names(flags)  # before connecting: a bad name sends nothing
    require_selection(filters, everything, "mark")

    def change(session: Any, chosen: list[Any]) -> list[ItemResult]:
        if read is not None:
            return (mark_read if read else mark_unread)(session, chosen)
        return (add_flags if add else remove_flags)(session, chosen, *flags)

    _apply(session_name, filters, dry_run, as_json, "mark", change)


@click.command("show")
@session_option
@click.argument("key")
@click.option("--html", "as_html", is_flag=True, help="Show the HTML body instead of the text one.")
@json_option
@handle_errors
def show_command(session_name: str, key: str, as_html: bool, as_json: bool) -> None:
    """Show one message by KEY (from `list`): its headers, attachments and body, as text no mail can turn into
    terminal commands."""
    with open_session(session_name) as session:
        message = get_message(session, key, body_format="html" if as_html else "plain")
        data: dict[str, Any] = dict(message.properties(with_headers=as_json))

    def human() -> None:
        for label in ("from", "to", "cc", "subject"):
            value = data[label]
            text = ", ".join(value) if isinstance(value, list) else value
            if text:
                click.echo(f"{label.capitalize() + ':':<9}{terminal_text(text)}")
        click.echo(f"{'Date:':<9}{data['sent_date'] or ''}")
        click.echo(f"{'Key:':<9}{terminal_text(data['key'])}")
        if data["attachment_names"]:
            click.echo(f"{'Files:':<9}{terminal_text(', '.join(data['attachment_names']))}")
        click.echo("")
        for line in (data["body"] or "").splitlines():
            click.echo(terminal_text(line))

    emit(as_json, data, human)


COMMANDS = [
    show_command,
    folders_command,
    create_folder_command,
    rename_folder_command,
    delete_folder_command,
    list_command,
    save_attachments_command,
    save_command,
    move_command,
    delete_command,
    mark_command,
]
