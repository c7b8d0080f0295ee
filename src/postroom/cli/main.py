"""``postroom``: the command line, a thin shell over the library."""

from __future__ import annotations

import json
import sys

import click

from postroom import __version__
from postroom.cli import bots, mail, send
from postroom.cli.auth import auth_group
from postroom.cli.connect import connect_command, profiles_group, test_connection_command
from postroom.cli.demo import demo_command
from postroom.cli.output import CliState, setup_logging
from postroom.cli.server import server_group
from postroom.cli.vault import vault_group
from postroom.session import Runtime

__all__ = ["cli", "main"]


def _parse_var(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    variables = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: write NAME=VALUE")
        variables[name] = value
    return variables


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postroom")
@click.option("-v", "--debug", is_flag=True, help="Show full tracebacks and debug logging (also after the command).")
@click.option(
    "--var",
    "variables",
    multiple=True,
    callback=_parse_var,
    metavar="NAME=VALUE",
    help="A bot variable, for secrets given as var:NAME (repeatable).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, variables: dict[str, str]) -> None:
    """Email automation: named sessions to IMAP and POP3 servers, and the actions on them.

    Secrets are given as REFs: vault:NAME/ATTRIBUTE (the credential vault),
    var:NAME (a --var or environment variable), env:NAME (environment only),
    or a bare value (an insecure string, accepted with a warning).
    """
    setup_logging(debug)
    ctx.obj = CliState(debug=debug, variables=variables)
    # the command's sessions live in a runtime of its own, whose hints name this CLI's commands
    ctx.with_resource(Runtime(name="cli", sign_in_hint="run `postroom auth login {session}`"))


cli.add_command(connect_command)
cli.add_command(auth_group)
cli.add_command(test_connection_command)
cli.add_command(profiles_group)
cli.add_command(vault_group)
cli.add_command(demo_command)
cli.add_command(server_group)
for command in [*mail.COMMANDS, *send.COMMANDS, *bots.COMMANDS]:
    cli.add_command(command)


def main() -> None:
    """Console-script entry point. A usage error (unknown option, missing argument) exits 2, and under
    ``--json`` it comes in the same envelope as every other error."""
    try:
        code = cli.main(prog_name="postroom", standalone_mode=False)
    except click.UsageError as exc:
        if {"--json", "-j"} & set(sys.argv[1:]):
            field = exc.param.name if isinstance(exc, click.BadParameter) and exc.param is not None else None
            hint = f"see `{exc.ctx.command_path} --help`" if exc.ctx is not None else "see `postroom --help`"
            error = {"type": "UsageError", "message": exc.format_message(), "hint": hint, "field": field}
            click.echo(json.dumps({"ok": False, "error": error}, indent=2, ensure_ascii=False))
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
