"""Checks shared by every connection setting: each error names the field and the fix."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, get_args

from postroom.errors import ConfigError

__all__ = ["check_ca_file", "check_choice", "check_known", "check_port", "check_timeout", "normalise_host"]

_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def check_choice(name: str, value: object, choices: Any) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise ConfigError(
            name, f"{value!r} is not supported", hint=f"choose one of {', '.join(repr(a) for a in allowed)}"
        )


def check_port(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(name, f"{value!r} is not a TCP port", hint="give a whole number from 1 to 65535")


def check_timeout(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (value > 0 and math.isfinite(value)):
        raise ConfigError(name, f"{value!r} is not a usable timeout", hint="give seconds, greater than 0")


def normalise_host(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(name, f"expected a host name, got {type(value).__name__}")
    if any(ch in value for ch in "\r\n\0"):
        raise ConfigError(name, "contains a line break or NUL character", hint="give the host name only")
    host = value.strip()
    if not host:
        raise ConfigError(name, "is empty", hint="give the server's host name, e.g. imap.example.com")
    if "://" in host:
        raise ConfigError(
            name,
            f"{value!r} is a URL",
            hint="give the host name only (e.g. imap.example.com); set port= apart",
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host.count(":") == 1 and host.rsplit(":", 1)[1].isdigit():
        raise ConfigError(name, f"{value!r} includes a port", hint="give the host name alone and set port= apart")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower().rstrip(".")
    except UnicodeError:
        raise ConfigError(name, f"{value!r} is not a valid host name") from None
    if not ascii_host or not all(_HOST_LABEL.match(label) for label in ascii_host.split(".")):
        raise ConfigError(
            name,
            f"{value!r} is not a valid host name",
            hint="letters, digits, '-' and '.' only, e.g. mail.example.com",
        )
    return ascii_host


def check_ca_file(value: object) -> Path:
    if not isinstance(value, str | Path) or any(ch in str(value) for ch in "\r\n\0"):
        raise ConfigError("ca_file", f"{value!r} is not a file path")
    path = Path(value).expanduser()
    if not path.is_file():
        raise ConfigError("ca_file", f"{path} does not exist", hint="give the PEM file of the server's CA")
    return path


def check_known(kind: str, given: Iterable[str], accepted: Iterable[str]) -> None:
    """A misspelt setting is a ConfigError naming it and the settings ``kind`` has, not a TypeError."""
    allowed = set(accepted)
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(unknown[0], f"is not a setting of {kind}", hint=f"settings are {', '.join(sorted(allowed))}")


#: What ends a line somewhere (``str.splitlines`` and the email library split on all of them), and NUL.
LINE_BREAKS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029\0"
_LINE_BREAK = re.compile(f"[{re.escape(LINE_BREAKS)}]")


def check_one_line(name: str, value: str, *, hint: str = "give it on one line") -> str:
    """``value`` if it is one line; a :class:`ConfigError` naming ``name`` and the character if not
    (a line break would split a header or a protocol command)."""
    found = _LINE_BREAK.search(value)
    if found is not None:
        raise ConfigError(name, f"contains a line break or NUL (U+{ord(found.group()):04X})", hint=hint)
    return value


def one_line(text: str) -> str:
    """``text`` with every line break and NUL replaced by a space (for text that came with mail)."""
    return _LINE_BREAK.sub(" ", text)
