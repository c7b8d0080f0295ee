"""The contract every transport implements, and the values it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from postroom.filters import MessageFilter
from postroom.message.structure import MimePart
from postroom.message.summary import KeyRun, MessageKey, MessageSummary

__all__ = ["EWS_FEATURES", "Features", "FetchesAhead", "Folder", "ItemResult", "Mailbox", "SendsMail", "ServerReport"]


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


@dataclass(frozen=True)
class Features:
    """What a transport can do; actions check this before touching the server."""

    folders: bool
    flags: bool
    move: bool
    #: Can fetch one section of many messages in one command (IMAP); used to prefetch bodies.
    bulk_sections: bool = False
    #: Sends mail itself (EWS, Graph) instead of through an SMTP server.
    send: bool = False
    #: Can send a summaries request before its replies are wanted (IMAP pipelining): see :class:`FetchesAhead`.
    fetch_ahead: bool = False


#: EWS: folders, read status, server-side moves, bodies fetched per chunk, and it sends mail itself.
EWS_FEATURES = Features(folders=True, flags=True, move=True, bulk_sections=True, send=True)


@dataclass(frozen=True)
class Folder:
    """A folder as the server lists it; ``name`` uses ``/`` between levels whatever the server's delimiter."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemResult:
    """What happened to one message of a bulk call."""

    key: MessageKey
    ok: bool
    detail: str = ""
    new_key: MessageKey | None = None


class Mailbox(Protocol):
    """One connection to one mailbox. Not thread-safe: a session serialises calls.

    Each method maps foreign exceptions to :class:`~postroom.errors.PostroomError`
    and raises :class:`~postroom.errors.ConnectionLostError` when the server is gone,
    which tells the session it may reconnect and retry. Bulk methods return one
    :class:`ItemResult` per key, in order.
    """

    features: Features

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

    def folders(self, pattern: str = "*") -> list[Folder]:
        """Folders matching ``pattern`` (``*`` any depth, ``%`` one level)."""
        ...

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        """Keys of the messages the server finds for ``filter_`` (a superset), in the filter's order, per folder."""
        ...

    def summaries(self, keys: list[MessageKey], *, first_section: int = 0) -> list[MessageSummary]:
        """Headers, flags, size and structure of ``keys`` (one folder); gone ones are skipped.

        ``first_section=N`` asks for the first N bytes of section 1 too, where the server can give them cheaply.
        """
        ...

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        """A part's content, transfer encoding undone."""
        ...

    def sections(self, keys: list[MessageKey], section: str) -> dict[MessageKey, bytes]:
        """One section of many messages of one folder, still transfer-encoded (only when ``bulk_sections``)."""
        ...

    def stream_part(self, key: MessageKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        """Send a part's decoded content to ``write`` chunk by chunk; return the byte count."""
        ...

    def header_block(self, key: MessageKey) -> bytes:
        """The full header block of a message."""
        ...

    def raw(self, key: MessageKey) -> bytes:
        """The whole message, byte for byte."""
        ...

    def set_seen(self, keys: list[MessageKey], seen: bool) -> list[ItemResult]:
        """Mark read or unread."""
        ...

    def move(self, keys: list[MessageKey], folder: str, *, allow_expunge_all: bool = False) -> list[ItemResult]:
        """Move to ``folder``, server-side."""
        ...

    def delete(self, keys: list[MessageKey], *, allow_expunge_all: bool = False) -> list[ItemResult]:
        """Delete for good (POP3: committed when the session disconnects)."""
        ...

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        """Store a message in ``folder`` (e.g. a copy of what was sent, in Sent)."""
        ...

    def has_message_id(self, folder: str, message_id: str) -> bool:
        """Whether ``folder`` holds a message with this Message-ID header (to make a retried APPEND safe)."""
        ...


class SendsMail(Protocol):
    """A mailbox whose server sends mail itself (``features.send``): EWS, Graph."""

    def submit(self, raw: bytes, *, save_copy: bool) -> None:
        """Send ``raw`` (recipients from its To, Cc and Bcc headers); keep a copy in Sent when asked."""
        ...


class FetchesAhead(Protocol):
    """A mailbox that can have the next summaries on their way while the caller works (``features.fetch_ahead``)."""

    def fetch_ahead(self, keys: list[MessageKey], *, first_section: int = 0) -> None:
        """Send the request for the summaries of ``keys`` now; :meth:`collect_ahead` reads them."""
        ...

    def collect_ahead(self, keys: list[MessageKey], *, first_section: int = 0) -> list[MessageSummary] | None:
        """What :meth:`fetch_ahead` asked for with the same arguments, or None if a change in between dropped it."""
        ...
