"""One named session: a config, its resolved login, and a live mailbox connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal, TypeVar

from postroom.auth.base import Login
from postroom.config.base import ServerConfig
from postroom.credentials import ResolveContext
from postroom.errors import (
    ConfigError,
    ConnectionLostError,
    PostroomError,
    ServerTimeoutError,
    ServerUnreachableError,
    SessionError,
)
from postroom.logs import get_logger
from postroom.message.keys import MessageKey
from postroom.session.positions import FilePositions, PositionStore
from postroom.session.retry import RETRY_POLICIES, OperationKind, ReconnectPolicy, RetryPolicy
from postroom.transports.contract import Mailbox
from postroom.transports.registry import Backend, backend_for

__all__ = ["Session", "SessionState"]

_log = get_logger("postroom.session")
T = TypeVar("T")
SessionState = Literal["new", "open", "closed"]


class Session:
    """A connection to one mailbox, used by name through :func:`postroom.get_session`.

    Calls are serialised (one command at a time on the wire), so a session may be
    shared between threads. When the server has dropped the connection (idle
    timeout, restart, a flaky network), the session reconnects as its
    :class:`~postroom.ReconnectPolicy` says, logs it, and repeats what is safe to repeat.
    """

    def __init__(
        self,
        name: str,
        config: ServerConfig,
        context: ResolveContext,
        *,
        backend: Backend | None = None,
        on_close: Callable[[Session], None] | None = None,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.backend = backend or backend_for(config)
        self._context = context
        self._on_close = on_close
        self._lock = threading.RLock()
        self._mailbox: Mailbox | None = None
        self._mailbox_type: type | None = None
        self.state: SessionState = "new"
        self.opened_at: float | None = None
        self.reconnect = reconnect or ReconnectPolicy()
        #: Reconnects over the session's life (each one is logged).
        self.reconnects = 0
        #: Where incremental loops on this session keep their place (set by the runtime that opened it).
        self.positions: PositionStore = FilePositions()

    def __repr__(self) -> str:
        return f"<Session {self.name!r} {self.config.address} {self.state}>"

    @property
    def server(self) -> str:
        return self.config.address

    @property
    def label(self) -> str:
        """The protocol's name for messages: IMAP, POP3, EWS."""
        return self.backend.label

    def can(self, ability: type) -> bool:
        """Whether this session's mailbox has ``ability`` (an ability Protocol of
        :mod:`postroom.transports.contract`, e.g. ``Moves``). Known once the session has opened."""
        return self._mailbox_type is not None and issubclass(self._mailbox_type, ability)

    def check_key(self, key: MessageKey) -> MessageKey:
        """``key`` if it names a message of this session's kind; a key from another kind of server is refused."""
        if not isinstance(key, self.backend.key_type):
            raise ConfigError(
                "messages",
                f"{key} is not a message of this {self.label} session {self.name!r}",
                hint="use messages (or keys) from a loop over the same session",
            )
        return key

    def open(self) -> Session:
        """Connect and log in. Secrets are resolved afresh on every (re)connect."""
        with self._lock:
            if self.state == "closed":
                raise SessionError(f"session {self.name!r} is closed", hint="connect again under a new or same name")
            self._mailbox = self._connect()
            self.state = "open"
            self.opened_at = time.time()
        return self

    def resolve_login(self) -> Login:
        """The session's credentials, resolved afresh (for sending through SMTP with the same login)."""
        try:
            return self.config.auth.resolve(self._context)
        except PostroomError as exc:
            raise exc.with_context(session=self.name) from exc.__cause__

    def _connect(self, mailbox: Mailbox | None = None) -> Mailbox:
        """Open ``mailbox`` again (it keeps state a reconnect must carry over, such as POP3 deletions
        not yet committed), or a new one."""
        try:
            if mailbox is None:
                mailbox = self.backend.mailbox(self.config, self.config.auth.resolve(self._context))
                self._mailbox_type = type(mailbox)
            mailbox.open()
        except PostroomError as exc:
            raise exc.with_context(session=self.name, server=self.config.address) from exc.__cause__
        return mailbox

    def call(self, operation: Callable[[Mailbox], T], *, kind: OperationKind = "read") -> T:
        """Run ``operation`` on the live mailbox. A connection lost before it is reconnected first; one lost
        during it is reconnected and the operation repeated when its kind says that is safe
        (:data:`~postroom.session.retry.RETRY_POLICIES`), else the loss is raised. Reconnects follow
        :attr:`reconnect`; when it gives up, the error says how often it tried and what state the mailbox is in."""
        policy = RETRY_POLICIES[kind]
        with self._lock:
            if self.state != "open":
                raise SessionError(f"session {self.name!r} is {self.state}", hint="connect first")
            try:
                in_a_row = 0
                why = "the previous connection was closed"
                while True:
                    if self._mailbox is None or not self._mailbox.connected:
                        in_a_row = self._reconnect_until_up(in_a_row, why, policy)
                    assert self._mailbox is not None
                    try:
                        return operation(self._mailbox)
                    except ConnectionLostError as lost:
                        if not policy.repeat:
                            raise
                        if lost.progress:  # the operation kept what it had read: a fresh count
                            in_a_row = 0
                        why = lost.problem
            except PostroomError as exc:
                raise exc.with_context(session=self.name, server=self.config.address) from exc.__cause__

    def _reconnect_until_up(self, in_a_row: int, why: str, policy: RetryPolicy) -> int:
        """Reconnect, waiting between failed tries as :attr:`reconnect` says; returns the tries in a row so far."""
        while True:
            if in_a_row >= self.reconnect.attempts:
                raise ConnectionLostError(
                    f"the connection was lost ({why}) and {in_a_row} reconnect(s) in a row did not hold; gave up",
                    hint=f"{policy.state}. The session reconnects on its next use; check the network path and "
                    "the server's connection limits, or connect with reconnect=ReconnectPolicy(attempts=...)",
                )
            in_a_row += 1
            time.sleep(self.reconnect.delay(in_a_row))
            try:
                self._reconnect(why)
                return in_a_row
            except (ConnectionLostError, ServerUnreachableError, ServerTimeoutError) as failed:
                why = failed.problem

    def _reconnect(self, why: str) -> None:
        _log.warning("session %r: %s; reconnecting to %s", self.name, why, self.config.address)
        if self._mailbox is not None:
            self._mailbox.close()
        self._mailbox = self._connect(self._mailbox)
        self.reconnects += 1
        _log.info("session %r: reconnected to %s", self.name, self.config.address)

    def close(self) -> None:
        """Log out and close. Idempotent; never raises."""
        with self._lock:
            mailbox, self._mailbox = self._mailbox, None
            self.state = "closed"
        if mailbox is not None:
            mailbox.close()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
