"""Named sessions: connect under a name, find by name, disconnect. Thread-safe."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from postroom.config import EmailServer, Ews, ServerConfig
from postroom.credentials import CredentialVault, ResolveContext
from postroom.errors import ConfigError, SessionExistsError, SessionNotFoundError
from postroom.logs import get_logger
from postroom.session.session import Session

__all__ = ["connect", "disconnect", "disconnect_all", "get_session", "open_sessions"]

_log = get_logger("postroom.session")
_lock = threading.RLock()
_sessions: dict[str, Session] = {}


def connect(
    name: str,
    config: ServerConfig,
    *,
    replace: bool = False,
    variables: Mapping[str, str] | None = None,
    vault: CredentialVault | None = None,
) -> Session:
    """Open a session to ``config``'s server and register it as ``name``.

    ``variables`` are the bot's variables that :class:`~postroom.Variable` secrets
    resolve against. A live session already named ``name`` is an error unless
    ``replace=True``, which closes the old one once the new one is open.
    Use the returned session as a context manager to disconnect on exit.
    """
    name = _check_name(name)
    if not isinstance(config, EmailServer | Ews):
        raise ConfigError("config", f"expected EmailServer(...) or Ews(...), got {type(config).__name__}")
    with _lock:
        if name in _sessions and not replace:
            raise _exists(name)
    new = Session(name, config, ResolveContext(variables=dict(variables or {}), vault=vault)).open()
    with _lock:
        old = _sessions.get(name)
        if old is not None and not replace:  # another thread won the race
            new.close()
            raise _exists(name)
        _sessions[name] = new
    if old is not None:
        old.close()
        _log.info("session %r replaced", name)
    _log.info("session %r connected to %s", name, config.address)
    return new


def get_session(name: str) -> Session:
    """The open session called ``name``."""
    with _lock:
        found = _sessions.get(name)
        if found is None:
            open_names = ", ".join(repr(n) for n in sorted(_sessions)) or "none"
            raise SessionNotFoundError(
                f"no open session named {name!r} (open sessions: {open_names})",
                hint="call connect() with that name first",
            )
        return found


def open_sessions() -> list[str]:
    """Names of the open sessions."""
    with _lock:
        return sorted(_sessions)


def disconnect(name: str, *, missing_ok: bool = False, only: Session | None = None) -> None:
    """Close the session ``name`` and forget it."""
    with _lock:
        found = _sessions.get(name)
        if found is None or (only is not None and found is not only):
            if missing_ok:
                if only is not None:
                    only.close()
                return
            get_session(name)  # raises the helpful error
            return
        del _sessions[name]
    found.close()
    _log.info("session %r disconnected", name)


def disconnect_all() -> None:
    """Close every open session (e.g. at the end of a bot)."""
    with _lock:
        names = list(_sessions)
    for name in names:
        disconnect(name, missing_ok=True)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or any(ch in name for ch in "\r\n\0"):
        raise ConfigError("name", f"{name!r} is not a usable session name", hint="give a short non-empty name")
    return name.strip()


def _exists(name: str) -> SessionExistsError:
    return SessionExistsError(
        f"a session named {name!r} is already open",
        hint="disconnect it first, pick another name, or pass replace=True",
    )
