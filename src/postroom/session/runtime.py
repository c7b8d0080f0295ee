"""A :class:`Runtime` owns a bot's named sessions; two runtimes in one process never see each other's.

The module-level ``postroom.connect`` / ``get_session`` / ``disconnect`` use the
*current* runtime: the one a ``with Runtime():`` block made current in this thread
or task, else the process's default runtime.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Mapping
from types import TracebackType

from postroom.auth.oauth.tokens import TokenStores
from postroom.config.base import ServerConfig
from postroom.credentials import CredentialVault, ResolveContext
from postroom.credentials.shared_vault import SharedVault
from postroom.errors import ConfigError, SessionExistsError, SessionNotFoundError
from postroom.logs import get_logger
from postroom.session.positions import FilePositions, PositionStore
from postroom.session.retry import ReconnectPolicy
from postroom.session.session import Session
from postroom.transports.registry import backend_for

__all__ = ["Runtime", "current_runtime", "default_runtime"]

_log = get_logger("postroom.session")


class Runtime:
    """Named sessions, and the variables and vault their secrets resolve against. Thread-safe.

    ``variables`` and ``vault`` are the defaults of every :meth:`connect` of this runtime.
    Use it as a context manager: inside the block it is the current runtime (session
    names given to actions are looked up here), and on exit every session it opened is
    disconnected.
    """

    def __init__(
        self,
        *,
        name: str = "runtime",
        variables: Mapping[str, str] | None = None,
        vault: CredentialVault | None = None,
        token_stores: TokenStores | None = None,
        sign_in_hint: str | None = None,
        positions: PositionStore | None = None,
        shared_vault: SharedVault | None = None,
    ) -> None:
        self.name = name
        #: A postroom server's shared vault for ``Vault("locker/credential", ...)``; default: the one
        #: ``POSTROOM_SERVER_URL`` + ``POSTROOM_RUNNER_KEY`` name, if both are set.
        self.shared_vault = shared_vault if shared_vault is not None else SharedVault.from_environment()
        #: Where incremental loops (``messages(..., since_last=...)``) keep their place; default: files.
        self.positions: PositionStore = positions or FilePositions()
        self.variables: dict[str, str] = dict(variables or {})
        self.vault = vault
        #: Where OAuth2 tokens live (name → TokenStore); None: in the vault.
        self.token_stores = token_stores
        #: How a user signs in again, in this runtime's words, with ``{session}`` for the session's name.
        self.sign_in_hint = sign_in_hint
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] = {}
        self._tokens: list[contextvars.Token[Runtime]] = []

    def __repr__(self) -> str:
        return f"<Runtime {self.name!r} sessions={self.open_sessions()}>"

    def connect(
        self,
        name: str,
        config: ServerConfig,
        *,
        replace: bool = False,
        variables: Mapping[str, str] | None = None,
        vault: CredentialVault | None = None,
        reconnect: ReconnectPolicy | None = None,
    ) -> Session:
        """Open a session to ``config``'s server and register it as ``name``.

        ``variables`` are the bot's variables that :class:`~postroom.Variable` secrets
        resolve against (added to the runtime's own). ``reconnect`` says how hard the
        session tries to get a dropped connection back (default: :class:`ReconnectPolicy()`).
        A live session already named ``name`` is an error unless ``replace=True``, which
        closes the old one once the new one is open. Use the returned session as a context
        manager to disconnect on exit.
        """
        name = _check_name(name)
        entry = backend_for(config)
        with self._lock:
            if name in self._sessions and not replace:
                raise _exists(name)
        context = self.context_for(name, variables=variables, vault=vault)
        new = Session(name, config, context, backend=entry, on_close=self._forget, reconnect=reconnect)
        new.positions = self.positions
        new.open()
        with self._lock:
            old = self._sessions.get(name)
            if old is not None and not replace:  # another thread won the race
                new.close()
                raise _exists(name)
            self._sessions[name] = new
        if old is not None:
            old.close()
            _log.info("session %r replaced", name)
        _log.info("session %r connected to %s", name, config.address)
        return new

    def context_for(
        self, name: str, *, variables: Mapping[str, str] | None = None, vault: CredentialVault | None = None
    ) -> ResolveContext:
        """What the secrets of session ``name`` resolve against: this runtime's variables, vault and token stores."""
        return ResolveContext(
            variables={**self.variables, **(variables or {})},
            vault=vault or self.vault,
            token_stores=self.token_stores,
            sign_in_hint=self.sign_in_hint.format(session=name) if self.sign_in_hint else None,
            shared_vault=self.shared_vault,
        )

    def get_session(self, name: str) -> Session:
        """The open session called ``name``."""
        with self._lock:
            found = self._sessions.get(name)
            if found is None:
                open_names = ", ".join(repr(n) for n in sorted(self._sessions)) or "none"
                raise SessionNotFoundError(
                    f"no open session named {name!r} (open sessions: {open_names})",
                    hint="call connect() with that name first",
                )
            return found

    def open_sessions(self) -> list[str]:
        """Names of the open sessions."""
        with self._lock:
            return sorted(self._sessions)

    def disconnect(self, name: str, *, missing_ok: bool = False) -> None:
        """Close the session ``name`` and forget it."""
        with self._lock:
            found = self._sessions.pop(name, None)
        if found is None:
            if not missing_ok:
                self.get_session(name)  # raises the helpful error
            return
        found.close()
        _log.info("session %r disconnected", name)

    def disconnect_all(self) -> None:
        """Close every open session (e.g. at the end of a bot)."""
        for name in self.open_sessions():
            self.disconnect(name, missing_ok=True)

    def _forget(self, session: Session) -> None:
        """A session closed itself (``with session:``): forget it, unless the name is another session's now."""
        with self._lock:
            if self._sessions.get(session.name) is session:
                del self._sessions[session.name]

    def __enter__(self) -> Runtime:
        self._tokens.append(_current.set(self))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.reset(self._tokens.pop())
        self.disconnect_all()


_default = Runtime(name="default")
_current: contextvars.ContextVar[Runtime] = contextvars.ContextVar("postroom_runtime", default=_default)


def default_runtime() -> Runtime:
    """The process's runtime, used where no ``with Runtime():`` block is active."""
    return _default


def current_runtime() -> Runtime:
    """The runtime of the innermost ``with Runtime():`` block in this thread or task, else the default one."""
    return _current.get()


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip() or any(ch in name for ch in "\r\n\0"):
        raise ConfigError("name", f"{name!r} is not a usable session name", hint="give a short non-empty name")
    return name.strip()


def _exists(name: str) -> SessionExistsError:
    return SessionExistsError(
        f"a session named {name!r} is already open",
        hint="disconnect it first, pick another name, or pass replace=True",
    )
