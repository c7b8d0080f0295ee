"""What every kind of server config is, and the settings a config offers to the CLI and profiles."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from postroom.auth.base import AuthMode
from postroom.validation import check_known

__all__ = ["ServerConfig", "Setting", "config_from_settings", "settings_of"]

C = TypeVar("C")


@runtime_checkable
class ServerConfig(Protocol):
    """Validated, immutable settings of one kind of server (``EmailServer``, ``Ews``, …)."""

    @property
    def protocol(self) -> str:
        """The transport's name in the registry: ``imap``, ``pop3``, ``ews``, …"""
        ...

    @property
    def auth(self) -> AuthMode:
        """How to log in."""
        ...

    @property
    def address(self) -> str:
        """A label for messages and logs: where the server is, never a credential."""
        ...

    def given(self) -> dict[str, Any]:
        """The settings as given (not those derived from others), ``auth`` included: ``type(self)(**given())``
        builds the same config."""
        ...

    def clone(self, **changes: Any) -> ServerConfig:
        """A copy with ``changes`` applied and validated again."""
        ...


@dataclass(frozen=True)
class Setting:
    """A config field a user may set from the command line (``--name``) or keep in a profile."""

    #: The config's field.
    name: str
    help: str
    #: ``str``, ``int``, ``float``, ``Path``, or ``bool`` (a flag).
    type: type = str
    choices: tuple[str, ...] | None = None
    #: The command-line option when it is not ``--`` + the field's name with dashes.
    option: str | None = None
    #: For a ``bool`` flag: the flag sets the field to this value (``--no-verify`` sets ``verify_certificate`` False).
    flag_value: bool = True

    @property
    def flag(self) -> str:
        return self.option or "--" + self.name.replace("_", "-")


def settings_of(config: ServerConfig) -> dict[str, Any]:
    """``config``'s given settings that differ from the defaults, as JSON values (``auth`` left out)."""
    defaults = {f.name: f.default for f in dataclasses.fields(config) if f.init}  # type: ignore[arg-type]
    out: dict[str, Any] = {"protocol": config.protocol}
    for name, value in config.given().items():
        if name == "auth" or (name in defaults and value == defaults[name] and name != "protocol"):
            continue
        out[name] = str(Path(value).resolve()) if isinstance(value, Path) or (name == "ca_file" and value) else value
    return out


def config_from_settings(config_type: type[C], auth: AuthMode, settings: Mapping[str, Any]) -> C:
    """A config of ``config_type`` from a profile's settings; an unknown one is named, not a TypeError."""
    fields = {f.name for f in dataclasses.fields(config_type) if f.init}  # type: ignore[arg-type]
    given = dict(settings)
    if "protocol" not in fields:
        given.pop("protocol", None)
    check_known(config_type.__name__, given, fields - {"auth"})
    built: C = config_type(auth=auth, **given)  # type: ignore[call-arg]
    return built
