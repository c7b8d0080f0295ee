"""The server settings of ``postroom connect``, built from what the registered backends offer.

Each option comes from a backend's :class:`~postroom.config.base.Setting`; an option
that the chosen ``--protocol`` does not offer is refused with the protocols that do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from postroom.config.base import Setting
from postroom.errors import ConfigError
from postroom.transports.registry import Backend, backends

__all__ = ["RegistryCommand", "protocol_names", "settings_from_options"]

#: Options the CLI also uses for the login where a protocol does not take them as a setting
#: (``--mailbox``: EWS opens it itself; over IMAP it is the shared mailbox an OAuth2 token logs in to).
SHARED_WITH_AUTH = ("mailbox",)


def protocol_names() -> list[str]:
    return [entry.protocol for entry in backends()]


def _merged() -> dict[str, tuple[Setting, list[Backend]]]:
    """Every setting by field name, with the backends that offer it (the first one's help is shown)."""
    merged: dict[str, tuple[Setting, list[Backend]]] = {}
    for entry in backends():
        for setting in entry.settings:
            first, owners = merged.setdefault(setting.name, (setting, []))
            owners.append(entry)
            if setting.choices and first.choices and set(setting.choices) - set(first.choices):
                choices = tuple(sorted({*first.choices, *setting.choices}))
                merged[setting.name] = (Setting(**{**first.__dict__, "choices": choices}), owners)
    return merged


def _option(setting: Setting) -> click.Option:
    name = setting.name
    if setting.type is bool:
        return click.Option(
            [setting.flag, name], is_flag=True, default=None, flag_value=setting.flag_value, help=setting.help
        )
    kind: Any = setting.type
    if setting.choices:
        kind = click.Choice(list(setting.choices), case_sensitive=False)
    elif setting.type is Path:
        kind = click.Path(dir_okay=False, path_type=Path)
    return click.Option([setting.flag, name], type=kind, default=None, help=setting.help)


class RegistryCommand(click.Command):
    """A command whose ``--protocol`` and server-setting options come from the registry when it runs,
    so a backend registered after import (a plugin, a test helper) is offered too."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        kinds = "; ".join(f"{entry.protocol}: {entry.summary or entry.label}" for entry in backends())
        protocol = click.Option(
            ["--protocol"],
            type=click.Choice(protocol_names()),
            default="imap",
            show_default=True,
            help=f"The kind of server ({kinds}).",
        )
        dynamic: list[click.Parameter] = [protocol]
        for setting, _owners in _merged().values():
            dynamic.append(_option(setting))
        return [*dynamic, *super().get_params(ctx)]


def settings_from_options(entry: Backend, options: dict[str, Any]) -> dict[str, Any]:
    """Take the server settings out of ``options`` (the command's keyword arguments): those given, for ``entry``.

    A setting that ``entry`` does not offer is an error naming the protocols that do.
    """
    offered = {setting.name for setting in entry.settings}
    settings: dict[str, Any] = {}
    for name, (setting, owners) in _merged().items():
        if name not in options or (name in SHARED_WITH_AUTH and name not in offered):
            continue
        value = options.pop(name)
        if value is None:
            continue
        if name not in offered:
            others = " or ".join(owner.protocol for owner in owners)
            raise ConfigError(
                name,
                f"{setting.flag} does not apply to {entry.label}",
                hint=f"leave {setting.flag} out (it is for {others})",
            )
        settings[name] = value.lower() if setting.choices and isinstance(value, str) else value
    return settings
