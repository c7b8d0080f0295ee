"""The transport registry: the one place that knows which backends exist.

A backend registers its protocol name, its config class, a factory of unopened
mailboxes, its key type, the auth modes it accepts and the settings it offers on the
command line. Config, sessions, profiles and the CLI read only this registry, so a new
backend is one package under ``transports/`` plus one :func:`register` call.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from postroom.auth.base import AuthMode, Login
from postroom.config.base import ServerConfig, Setting, config_from_settings, settings_of
from postroom.errors import ConfigError
from postroom.extras import require_extra
from postroom.message.keys import MessageKey
from postroom.transports.contract import Mailbox

__all__ = ["Backend", "backend", "backend_for", "backends", "lazy", "register"]

MailboxFactory = Callable[[Any, Login], Mailbox]


@dataclass(frozen=True)
class Backend:
    """How to reach one kind of server."""

    #: The protocol's name: ``config.protocol``, ``--protocol NAME``, and the ``protocol`` of a profile.
    protocol: str
    #: For messages: ``IMAP``, ``POP3``, ``EWS``.
    label: str
    config_type: type[Any]
    #: ``(config, login) → an unopened mailbox``; see :func:`lazy` for a backend with a heavy import.
    mailbox: MailboxFactory
    key_type: type[MessageKey]
    #: The settings ``postroom connect`` offers for this protocol (and keeps in profiles).
    settings: tuple[Setting, ...] = ()
    #: The auth modes (``AuthMode.kind``) this protocol logs in with; empty: any.
    auth_kinds: frozenset[str] = field(default_factory=frozenset)
    #: One line for ``postroom connect --help``.
    summary: str = ""
    #: The OAuth2 provider its servers use when neither the config nor the user names one (EWS: Microsoft 365).
    default_oauth_provider: str | None = None

    def to_profile(self, config: ServerConfig) -> dict[str, Any]:
        """``config``'s settings as a profile stores them (JSON values; no auth, no secrets)."""
        return settings_of(config)

    def from_profile(self, settings: Mapping[str, Any], auth: AuthMode) -> ServerConfig:
        """A config from a profile's settings."""
        built: ServerConfig = config_from_settings(self.config_type, auth, settings)
        return built

    def accepts(self, auth_kind: str) -> bool:
        return not self.auth_kinds or auth_kind in self.auth_kinds


_lock = threading.Lock()
_backends: dict[str, Backend] = {}


def register(entry: Backend) -> Backend:
    """Make ``entry`` available to sessions, profiles and the CLI. A protocol name is registered once."""
    with _lock:
        found = _backends.get(entry.protocol)
        if found is not None and found != entry:
            raise ValueError(f"protocol {entry.protocol!r} is already registered by {found.config_type.__name__}")
        _backends[entry.protocol] = entry
    return entry


def backends() -> list[Backend]:
    """Every registered backend, by protocol name."""
    with _lock:
        return [_backends[name] for name in sorted(_backends)]


def backend(protocol: str) -> Backend:
    """The backend for ``protocol``."""
    with _lock:
        found = _backends.get(str(protocol))
        known = ", ".join(sorted(_backends))
    if found is None:
        raise ConfigError("protocol", f"{protocol!r} is not a protocol postroom knows", hint=f"one of {known}")
    return found


def backend_for(config: object) -> Backend:
    """The backend that serves ``config``, checked against the registered config classes."""
    protocol = getattr(config, "protocol", None)
    with _lock:
        found = _backends.get(protocol) if isinstance(protocol, str) else None
        kinds = sorted({entry.config_type.__name__ for entry in _backends.values()})
    if found is None or not isinstance(config, found.config_type):
        raise ConfigError(
            "config",
            f"expected {' or '.join(f'{kind}(...)' for kind in kinds)}, got {type(config).__name__}",
            hint="build the server's settings with one of those classes",
        )
    return found


def lazy(target: str, *, extra: str | None = None, feature: str = "") -> MailboxFactory:
    """A factory that imports ``"package.module:Class"`` on first use (exchangelib takes 0.4 s to import);
    with ``extra``, a missing dependency is a :class:`MissingExtraError` naming the pip line."""

    def make(config: Any, login: Login) -> Mailbox:
        if extra is not None:
            require_extra(extra, feature or target)
        module, _, name = target.partition(":")
        factory: MailboxFactory = getattr(importlib.import_module(module), name)
        return factory(config, login)

    make.__qualname__ = f"lazy({target!r})"
    return make
