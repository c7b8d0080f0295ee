"""``postroom run``, ``postroom bot check|status|retry|forget|schema`` and ``postroom worker``."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from postroom.cli.output import emit, handle_errors, json_option, state, terminal_text
from postroom.extras import require_extra

__all__ = ["COMMANDS"]


def _runner() -> Any:
    require_extra("bots", "bots")
    import postroom.runner as runner

    return runner


bot_file = click.argument("bot_file", type=click.Path(dir_okay=False))


class _RunBars:
    """``postroom run``'s bars on stderr: listing each mailbox, then processing (plain text, never markup)."""

    def __init__(self, bars: Any) -> None:
        self._bars = bars
        self._tasks: dict[str, Any] = {}

    def _show(self, label: str, done: int, of: int) -> None:
        task = self._tasks.get(label)
        if task is None:
            task = self._tasks[label] = self._bars.add_task(label, total=of)
        self._bars.update(task, completed=done, total=of)

    def discovered(self, mailbox: str, looked_at: int, of: int) -> None:
        self._show(f"listing {terminal_text(mailbox)}", looked_at, of)

    def processed(self, handled: int, of: int) -> None:
        if of:
            self._show("processing", handled, of)


@contextlib.contextmanager
def _run_bars(shown: bool) -> Iterator[_RunBars | None]:
    """Bars when ``shown`` and stderr is a terminal; else None."""
    if not shown or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bars:
        yield _RunBars(bars)


@click.command("run")
@bot_file
@click.option("--watch", is_flag=True, help="Keep running: IDLE/poll for new mail until stopped (Ctrl-C, SIGTERM).")
@click.option("--celery", "use_celery", is_flag=True, help="Schedule the polls on Celery; `postroom worker` processes.")
@click.option("--workers", type=click.IntRange(1, 64), help="Worker threads (default: the bot file's workers).")
@click.option("--log-json", is_flag=True, help="Log every step as a JSON line on stderr (bot, run, message key, step).")
@click.option(
    "--ledger", "ledger_url", help="The ledger's URL (default: the bot file's, else SQLite in the data folder)."
)
@json_option
@handle_errors
def run_command(
    bot_file: str,
    watch: bool,
    use_celery: bool,
    workers: int | None,
    log_json: bool,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Run a bot: process the mail that is there (each message once) and exit, or keep going with --watch.

    Exit codes: 0 every message done, 1 some failed (see `postroom bot status`), 3 a setting is wrong,
    6 a mailbox could not be reached, 7 its login was refused, 11 the ledger cannot be used.
    """
    runner = _runner()
    definition = runner.load_bot(bot_file)
    if log_json:
        _log_as_json()
    if ledger_url:
        definition = _with(definition, ledger=ledger_url)
    if definition.metrics_port is not None:
        from postroom.runner.metrics import serve_metrics

        port = serve_metrics(definition.metrics_port)
        click.echo(f"metrics on http://127.0.0.1:{port}/metrics", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if use_celery:
        from postroom.runner.celery_app import schedule

        report = schedule(definition, bot_file, watch=watch, stop=stop, variables=state().variables)
    else:
        with _run_bars(not watch and not as_json) as bars:
            report = runner.LocalRunner(definition, variables=state().variables, workers=workers, progress=bars).run(
                watch=watch, stop=stop
            )
    data: dict[str, Any] = report.to_dict()

    def human() -> None:
        click.echo(
            f"{definition.name}: {data['new']} new, {data['done']} done, {data['failed']} failed, "
            f"{data['retrying']} to try again, in {data['seconds']}s"
        )
        counts = data["ledger"]
        if counts:
            click.echo("ledger: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for line in [*data["could_not_connect"], *data["errors"]]:
            click.echo(f"  {terminal_text(str(line))}", err=True)

    emit(as_json, {"ok": report.exit_code == 0, **data}, human)
    sys.exit(report.exit_code)


def _log_as_json() -> None:
    import logging
    import sys as system

    from postroom.logs import JsonLogFormatter

    handler = logging.StreamHandler(system.stderr)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("postroom")
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)] + [handler]
    logger.setLevel(logging.INFO)


def _with(definition: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(definition, **changes)


@click.group("bot")
def bot_group() -> None:
    """Check bot files and look after their ledgers."""


@bot_group.command("check")
@bot_file
@json_option
@handle_errors
def check_command(bot_file: str, as_json: bool) -> None:
    """Check a bot file: every field, with the line of the first one that is wrong."""
    definition = _runner().load_bot(bot_file)
    data = {
        "ok": True,
        "bot": definition.name,
        "sessions": [s.name for s in definition.sessions],
        "steps": [s.kind for s in definition.steps],
    }
    emit(
        as_json,
        data,
        lambda: click.echo(f"{bot_file}: bot {definition.name!r} is fine ({len(definition.steps)} steps)"),
    )


@bot_group.command("schema")
def schema_command() -> None:
    """Print the bot file's format as JSON Schema."""
    from postroom.runner.schema import bot_schema

    click.echo(json.dumps(bot_schema(), indent=2))


def _ledger(bot_file: str, ledger_url: str | None) -> tuple[Any, Any]:
    runner = _runner()
    from postroom.runner.ledger import Ledger

    definition = runner.load_bot(bot_file)
    return definition, Ledger.open(ledger_url or definition.ledger)


ledger_option = click.option("--ledger", "ledger_url", help="The ledger's URL (default: the bot file's).")


@bot_group.command("status")
@bot_file
@ledger_option
@json_option
@handle_errors
def status_command(bot_file: str, ledger_url: str | None, as_json: bool) -> None:
    """What a bot has done, what failed, what is claimed and by whom, and how its triggers are."""
    definition, ledger = _ledger(bot_file, ledger_url)
    found = ledger.status(definition.name)
    stale_after = definition.watch.stale_after
    for box in found["mailboxes"]:
        silent = box["seconds_since_checked"]
        box["healthy"] = silent is not None and silent <= stale_after and not box["last_error"]

    def human() -> None:
        counts = found["counts"]
        click.echo(f"{definition.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        for box in found["mailboxes"]:
            silent = box["seconds_since_checked"]
            heard = f"heard from {silent:.0f}s ago" if silent is not None else "never reached"
            health = "ok" if box["healthy"] else "STALE" if silent is not None and silent > stale_after else "check"
            click.echo(
                f"  {terminal_text(box['mailbox'])} {terminal_text(box['folder'])}: {box['trigger'] or '-'}, "
                f"{heard} [{health}]"
            )
            if box["last_error"]:
                click.echo(f"    last error: {terminal_text(box['last_error'])}")
            if box["notice"]:
                click.echo(f"    note: {terminal_text(box['notice'])}")
        for claim in found["claimed"]:
            click.echo(f"  claimed {terminal_text(claim['key'])} by {claim['by']} (expires in {claim['expires_in']}s)")
        for failure in found["failed"]:
            retry = f", next try in {failure['next_try_in']}s" if failure["next_try_in"] is not None else ", gave up"
            click.echo(
                f"  failed {terminal_text(failure['key'])} ({failure['attempts']} attempts{retry}): "
                f"{terminal_text(failure['error'] or '')}"
            )

    emit(as_json, {"ok": True, **found}, human)


@bot_group.command("retry")
@bot_file
@click.option("--key", "keys", multiple=True, help="Only this message (repeatable); default: every failed one.")
@click.option("--resend", is_flag=True, help="Also send mail whose delivery was unknown (after checking by hand).")
@ledger_option
@json_option
@handle_errors
def retry_command(bot_file: str, keys: tuple[str, ...], resend: bool, ledger_url: str | None, as_json: bool) -> None:
    """Send failed messages through the steps again (steps already done are not repeated)."""
    definition, ledger = _ledger(bot_file, ledger_url)
    count = ledger.retry(definition.name, keys or None, resend=resend)
    emit(
        as_json,
        {"ok": True, "requeued": count},
        lambda: click.echo(f"{count} failed message(s) will be tried again at the next run"),
    )


@bot_group.command("forget")
@bot_file
@click.option("--key", "keys", multiple=True, help="Only this message (repeatable).")
@click.option("--state", "states", multiple=True, type=click.Choice(["seen", "claimed", "done", "failed", "skipped"]))
@click.option("--all", "everything", is_flag=True, help="Every entry of the bot.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@ledger_option
@json_option
@handle_errors
def forget_command(
    bot_file: str,
    keys: tuple[str, ...],
    states: tuple[str, ...],
    everything: bool,
    dry_run: bool,
    ledger_url: str | None,
    as_json: bool,
) -> None:
    """Remove ledger entries: those messages count as new at the next run (and are processed again)."""
    if not (keys or states or everything):
        raise click.UsageError("say what to forget: --key, --state or --all")
    definition, ledger = _ledger(bot_file, ledger_url)
    removed = ledger.forget(definition.name, keys or None, states=states, dry_run=dry_run)
    verb = "would forget" if dry_run else "forgot"
    emit(
        as_json,
        {"ok": True, "dry_run": dry_run, "would_forget" if dry_run else "forgot": removed},
        lambda: click.echo(f"{verb} {len(removed)} entr{'y' if len(removed) == 1 else 'ies'}"),
    )


@click.command("worker", context_settings={"ignore_unknown_options": True})
@bot_file
@click.option("--concurrency", type=click.IntRange(1, 256), help="Processes (default: the bot file's workers).")
@click.option("--pool", type=click.Choice(["prefork", "threads", "solo"]), default="prefork", show_default=True)
@handle_errors
def worker_command(bot_file: str, concurrency: int | None, pool: str) -> None:
    """Start a Celery worker for a bot (broker: the bot file's, else redis://localhost:6379/0)."""
    from postroom.runner.celery_app import start_worker

    start_worker(bot_file, concurrency=concurrency, pool=pool, variables=state().variables)


COMMANDS = [run_command, bot_group, worker_command]
