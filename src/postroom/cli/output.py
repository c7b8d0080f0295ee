"""The CLI's edge: JSON or human output, one-line errors, warnings as one line."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import click

from postroom.credentials import redact
from postroom.errors import PostroomError, PostroomWarning

__all__ = ["CliState", "emit", "handle_errors", "json_option", "setup_logging", "state"]

P = ParamSpec("P")
#: Exit code for a bug in postroom (EX_SOFTWARE).
INTERNAL_ERROR_EXIT = 70
#: Exit status when the reader of stdout closed it (128 + SIGPIPE, as the shell reports a tool killed by it).
BROKEN_PIPE_EXIT = 141
R = TypeVar("R")


@dataclass
class CliState:
    """Options of the root command, shared with every subcommand."""

    debug: bool = False
    variables: dict[str, str] = field(default_factory=dict)


def state() -> CliState:
    ctx = click.get_current_context()
    found = ctx.find_object(CliState)
    return found if found is not None else CliState()


json_option = click.option("-j", "--json", "as_json", is_flag=True, help="Print the result as JSON (for scripts).")


#: What mail may carry that a terminal would obey: C0 controls (tab and line breaks included: they would break
#: a row or a column), DEL, C1 controls, and the bidirectional overrides that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(value: str) -> str:
    """``value`` safe to print: each character a terminal would act on shown as its escape (``\\x1b``)."""
    return _UNSAFE.sub(
        lambda found: f"\\x{ord(found.group()):02x}" if ord(found.group()) < 0x100 else f"\\u{ord(found.group()):04x}",
        value,
    )


def emit(as_json: bool, data: Any, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON, or call ``human`` to print it for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        human()


_PYTHON_SETTING = re.compile(r"\b([a-z][a-z0-9_]*)=(?:'([^']*)'|(True|False|\d+))")


def cli_words(text: str) -> str:
    """An error's text as the command's flags say it: ``security='starttls'`` becomes ``--security starttls``
    (``overwrite=True`` becomes ``--overwrite``), for the settings the running command has as options."""
    try:
        ctx = click.get_current_context()
    except RuntimeError:
        return text
    flags = {opt for param in ctx.command.get_params(ctx) for opt in getattr(param, "opts", ())}

    def speak(found: re.Match[str]) -> str:
        flag = "--" + found.group(1).replace("_", "-")
        if flag not in flags:
            return found.group(0)
        if found.group(3) in {"True", "False"}:
            return flag if found.group(3) == "True" else found.group(0)
        return f"{flag} {found.group(2) if found.group(2) is not None else found.group(3)}"

    return _PYTHON_SETTING.sub(speak, text)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`PostroomError` into one clear line on stderr and a non-zero exit; also give the
    command ``--debug`` / ``-v`` of its own (accepted after the command as before it)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs.pop("debug_here", False):
            current = click.get_current_context().find_object(CliState)
            if current is not None:
                current.debug = True
            setup_logging(True)
        try:
            return func(*args, **kwargs)
        except PostroomError as exc:
            if state().debug:
                traceback.print_exc(file=sys.stderr)
            if kwargs.get("as_json"):
                click.echo(json.dumps({"ok": False, "error": exc.to_dict()}, indent=2, ensure_ascii=False))
            click.echo(f"error: {redact(cli_words(str(exc)))}", err=True)
            sys.exit(exc.exit_code)
        except BrokenPipeError:
            # the reader went away (`postroom list | head -1`): stop quietly, as other Unix tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(BROKEN_PIPE_EXIT)
        except (click.exceptions.Exit, click.ClickException, KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # a bug: still one line, traceback with --debug
            if state().debug:
                traceback.print_exc(file=sys.stderr)
            detail = redact(f"{type(exc).__name__}: {exc}")
            if kwargs.get("as_json"):
                error = {"type": "InternalError", "message": detail}
                click.echo(json.dumps({"ok": False, "error": error}, indent=2, ensure_ascii=False))
            click.echo(f"error: internal error ({detail}); run with --debug for the traceback and report it", err=True)
            sys.exit(INTERNAL_ERROR_EXIT)

    debug_option = click.option("-v", "--debug", "debug_here", is_flag=True, help="Full tracebacks and debug logging.")
    return debug_option(wrapper)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    click.echo(f"warning: {redact(str(message))}", err=True)


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"postroom: {redact(record.getMessage())}"


def setup_logging(debug: bool) -> None:
    """Warnings and postroom's log as single lines on stderr; everything with --debug."""
    warnings.showwarning = _show_warning
    warnings.filterwarnings("default", category=PostroomWarning)  # shown, never turned into errors
    logger = logging.getLogger("postroom")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s") if debug else _OneLine())
    logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)] + [handler]
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
