"""Options shared by the action commands: --session, the filters, message selection, progress."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import click

from postroom.actions.loop import MessageLoop, get_message, messages
from postroom.cli.output import state
from postroom.errors import ConfigError
from postroom.message.model import Message
from postroom.profiles import ProfileStore
from postroom.session import Session, connect, disconnect

__all__ = [
    "filter_options",
    "open_session",
    "profile_name",
    "selected_messages",
    "session_option",
    "with_progress",
]

P = ParamSpec("P")
R = TypeVar("R")


def complete_profiles(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Shell completion: the saved profiles' names."""
    try:
        return [name for name in ProfileStore().names() if name.startswith(incomplete)]
    except Exception:  # a damaged profiles file must not break the shell
        return []


session_option = click.option(
    "-s",
    "--session",
    "session_name",
    required=True,
    envvar="POSTROOM_SESSION",
    show_envvar=True,
    metavar="NAME",
    shell_complete=complete_profiles,
    help="Connection profile (see `postroom connect`).",
)


def profile_name(func: Callable[P, R]) -> Callable[P, R]:
    """The profile a command works on, named as every command names it: ``NAME``, ``-s NAME`` or
    ``POSTROOM_SESSION``; it arrives as ``name``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        name = kwargs.pop("name") or kwargs.pop("session_name")
        kwargs.pop("session_name", None)
        if not name:
            raise ConfigError("session", "no profile named", hint="give NAME, -s NAME, or set POSTROOM_SESSION")
        kwargs["name"] = name
        return func(*args, **kwargs)

    decorated = click.argument("name", required=False, metavar="[NAME]", shell_complete=complete_profiles)(wrapper)
    return click.option(
        "-s",
        "--session",
        "session_name",
        envvar="POSTROOM_SESSION",
        metavar="NAME",
        shell_complete=complete_profiles,
        help="The profile (as NAME).",
    )(decorated)


def _date(_ctx: click.Context, _param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: write a date like 2026-11-24 or 2026-11-24T08:00") from None
    return parsed


def filter_options(func: Callable[P, R]) -> Callable[P, R]:
    """The loop's filters as options; they arrive as a ``filters`` dict."""
    options = [
        click.option(
            "-f", "--folder", default="INBOX", show_default=True, help="Folder; 'Inbox/Sub', wildcard 'Inbox/Proj*'."
        ),
        click.option("--include-subfolders", is_flag=True, help="Every folder below --folder too (IMAP)."),
        click.option("--status", type=click.Choice(["all", "read", "unread"]), default="all", show_default=True),
        click.option("--subject", help="Subject contains this (a regular expression with --regex)."),
        click.option("--sender", "senders", multiple=True, help="Sender name or address contains this (repeatable)."),
        click.option("--since", callback=_date, help="Received on or after (ISO date or date-time)."),
        click.option("--before", callback=_date, help="Received before (ISO date or date-time)."),
        click.option("--regex", is_flag=True, help="--subject and --sender are regular expressions."),
        click.option("--case-sensitive", is_flag=True, help="Match case exactly."),
        click.option("--order", type=click.Choice(["newest", "oldest"]), default="newest", show_default=True),
        click.option("-n", "--limit", type=click.IntRange(min=1), help="Only the first N matches."),
        click.option("--key", "keys", multiple=True, metavar="KEY", help="Exactly these messages (keys from `list`)."),
    ]

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        names = [
            "folder",
            "include_subfolders",
            "status",
            "subject",
            "senders",
            "since",
            "before",
            "regex",
            "case_sensitive",
            "order",
            "limit",
            "keys",
        ]
        filters = {name: kwargs.pop(name) for name in names}
        kwargs["filters"] = filters
        return func(*args, **kwargs)

    decorated: Callable[P, R] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


@contextmanager
def open_session(name: str) -> Iterator[Session]:
    """Connect with profile ``name`` for the length of one command."""
    config = ProfileStore().load(name)
    session = connect(name, config, variables=state().variables, replace=True)
    try:
        yield session
    finally:
        disconnect(name, missing_ok=True)


def has_selection(filters: dict[str, Any]) -> bool:
    """True when the user narrowed the set (anything beyond folder and order)."""
    return bool(
        filters["keys"]
        or filters["subject"]
        or filters["senders"]
        or filters["since"]
        or filters["before"]
        or filters["status"] != "all"
        or filters["limit"]
    )


def selected_messages(session: Session, filters: dict[str, Any]) -> tuple[int, Iterator[Message], MessageLoop | None]:
    """(candidate count, messages, loop) for the filter options, or exactly the --key messages."""
    if filters["keys"]:
        chosen = [get_message(session, key) for key in filters["keys"]]
        return len(chosen), iter(chosen), None
    options = {k: v for k, v in filters.items() if k not in {"keys", "senders"}}
    loop = messages(session, sender=list(filters["senders"]) or None, **options)
    return loop.candidates, loop, loop


def with_progress(
    total: int, items: Iterator[Message], loop: MessageLoop | None, label: str, quiet: bool
) -> Iterator[Message]:
    """Yield ``items`` with a progress bar on stderr when it is a terminal (never in --json mode)."""
    if quiet or not sys.stderr.isatty() or total < 2:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            bar.update(task, completed=loop.scanned if loop else bar.tasks[0].completed + 1)
            yield item
        bar.update(task, completed=total)


def require_selection(filters: dict[str, Any], everything: bool, verb: str, *, all_flag: bool = True) -> None:
    """Refuse a command over a whole folder without a filter; ``all_flag``: the command has ``--all`` to allow it."""
    if not everything and not has_selection(filters):
        narrow = "narrow it (--subject, --sender, --status, --since, --key ...)"
        raise ConfigError(
            "filters",
            f"refusing to {verb} every message of {filters['folder']} without a filter; nothing was done",
            hint=f"{narrow} or pass --all" if all_flag else f"{narrow}: a whole folder is never answered at once",
        )
