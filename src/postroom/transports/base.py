"""The contract every transport implements, and what it reports about a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Mailbox", "ServerReport"]


@dataclass(frozen=True)
class ServerReport:
    """What a connected server offers; the body of *Test connection*."""

    protocol: str
    address: str
    greeting: str
    tls_version: str | None
    cipher: str | None
    capabilities: tuple[str, ...] = field(default_factory=tuple)
    #: IMAP: the number of folders the user can see.
    folder_count: int | None = None
    #: POP3: the number of messages in the maildrop.
    message_count: int | None = None


class Mailbox(Protocol):
    """One connection to one mailbox. Not thread-safe: a session serialises calls.

    Each method maps foreign exceptions to :class:`~postroom.errors.PostroomError`
    and raises :class:`~postroom.errors.ConnectionLostError` when the server is gone,
    which tells the session it may reconnect.
    """

    @property
    def connected(self) -> bool:
        """True while the connection is believed open."""
        ...

    def open(self) -> None:
        """Connect, secure (TLS or STARTTLS) and log in."""
        ...

    def close(self) -> None:
        """Log out and close; never raises."""
        ...

    def noop(self) -> None:
        """A cheap round trip: proves the connection is alive."""
        ...

    def report(self) -> ServerReport:
        """Describe the server: capabilities, TLS, folders or message count."""
        ...
