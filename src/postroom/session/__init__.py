"""Named sessions, owned by a :class:`Runtime`; the functions here use the current runtime."""

from __future__ import annotations

from collections.abc import Mapping

from postroom.config.base import ServerConfig
from postroom.credentials import CredentialVault
from postroom.session.positions import FilePositions, PositionStore
from postroom.session.retry import ReconnectPolicy
from postroom.session.runtime import Runtime, current_runtime, default_runtime
from postroom.session.session import Session, SessionState

__all__ = [
    "FilePositions",
    "PositionStore",
    "ReconnectPolicy",
    "Runtime",
    "Session",
    "SessionState",
    "connect",
    "current_runtime",
    "default_runtime",
    "disconnect",
    "disconnect_all",
    "get_session",
    "open_sessions",
]


def connect(
    name: str,
    config: ServerConfig,
    *,
    replace: bool = False,
    variables: Mapping[str, str] | None = None,
    vault: CredentialVault | None = None,
    reconnect: ReconnectPolicy | None = None,
) -> Session:
    """Open a session named ``name`` in the current runtime: see :meth:`Runtime.connect`."""
    return current_runtime().connect(
        name, config, replace=replace, variables=variables, vault=vault, reconnect=reconnect
    )


def get_session(name: str) -> Session:
    """The current runtime's open session called ``name``."""
    return current_runtime().get_session(name)


def open_sessions() -> list[str]:
    """Names of the current runtime's open sessions."""
    return current_runtime().open_sessions()


def disconnect(name: str, *, missing_ok: bool = False) -> None:
    """Close the current runtime's session ``name`` and forget it."""
    current_runtime().disconnect(name, missing_ok=missing_ok)


def disconnect_all() -> None:
    """Close every session of the current runtime (e.g. at the end of a bot)."""
    current_runtime().disconnect_all()
