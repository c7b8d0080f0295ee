"""``postroom demo``: the main job, on an embedded mail server."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import click

from postroom.cli.output import emit, handle_errors, json_option

__all__ = ["demo_command"]


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the run's files, kept (default: a temp folder, removed at the end).",
)
@click.option("--keep", is_flag=True, help="Keep the temp folder with the saved PDFs.")
@json_option
@handle_errors
def demo_command(workdir: Path | None, keep: bool, as_json: bool) -> None:
    """Run a small bot against an embedded mail server (no setup, no network)."""
    from postroom.sandbox.demo import run_demo

    if workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="postroom-demo-"))
        if not keep:
            click.get_current_context().call_on_close(lambda: shutil.rmtree(workdir, ignore_errors=True))

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if not as_json:
            click.echo(f"• {line}")

    summary = run_demo(say, workdir)
    kept = keep or click.get_current_context().params.get("workdir") is not None
    summary["kept"] = kept
    say(f"PDFs saved in {summary['output']}" if kept else "the run's temp folder was removed (--keep keeps it)")

    def table() -> None:
        rows = [
            (
                i["subject"],
                i["from"],
                ", ".join(Path(f).name for f in i["files"]),
                ", ".join(i["replied_to"]),
                "yes" if i["moved"] else "no",
            )
            for i in summary["invoices"]
        ]
        headers = ("invoice", "from", "saved", "replied to", "moved")
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table

            rich_table = Table(*headers, title="invoices processed")
            for row in rows:
                rich_table.add_row(*row)
            Console().print(rich_table)
        else:
            click.echo("\t".join(headers))
            for row in rows:
                click.echo("\t".join(row))

    emit(as_json, {"ok": True, "steps": lines, **summary}, table)
