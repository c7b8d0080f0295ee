"""``postroom demo``: the main job, on an embedded mail server."""

from __future__ import annotations

from pathlib import Path

import click

from postroom.cli.output import emit, handle_errors, json_option

__all__ = ["demo_command"]


@click.command("demo")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the run's files (default: a new temp folder).",
)
@json_option
@handle_errors
def demo_command(workdir: Path | None, as_json: bool) -> None:
    """Run a small bot against an embedded mail server (no setup, no network)."""
    from postroom.sandbox.demo import run_demo

    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if not as_json:
            click.echo(f"• {line}")

    summary = run_demo(say, workdir)
    emit(as_json, {"ok": True, "steps": lines, **summary}, lambda: None)
