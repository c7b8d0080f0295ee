"""The contract every transport implements: a narrow :class:`Mailbox` plus optional abilities.

The core contract is what every kind of server can do: open, close, noop, report,
search, summaries, bodies and parts, raw. Everything else is an *ability*, a
``runtime_checkable`` Protocol that a mailbox implements or not; actions ask with
``isinstance`` (through :meth:`postroom.Session.can`) and refuse what a session cannot
do before anything is sent. No protocol's vocabulary lives here: IMAP's sections,
EWS's item ids and Graph's batches stay inside their transports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from postroom.filters import MessageFilter
from postroom.message.keys import KeyRun, MessageKey
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary

if TYPE_CHECKING:
    import threading

    from postroom.errors import PostroomError

__all__ = [
    "ABILITY_NAMES",
    "STOP_CHECK_EVERY",
    "Appends",
    "ClaimsOnServer",
    "CreatesFolders",
    "Deletes",
    "FetchesAhead",
    "FetchesBodies",
    "FetchesBodiesAhead",
    "Flags",
    "Folder",
    "Folders",
    "ItemResult",
    "ItemStatus",
    "Keywords",
    "Mailbox",
    "ManagesFolders",
    "Moves",
    "ParsesWhole",
    "ResumesParts",
    "SavesDrafts",
    "ServerReport",
    "SubmitsMail",
    "Syncs",
    "Watches",
    "check_flag_names",
]


#: Seconds a :class:`Watches` wait may go on after its ``stop`` is set (a watching bot stops within this).
STOP_CHECK_EVERY = 0.5


@dataclass(frozen=True)
class ServerReport:
    """What a connected server offers; the body of *Test connection*."""

    protocol: str
    address: str
    greeting: str
    tls_version: str | None
    cipher: str | None
    capabilities: tuple[str, ...] = field(default_factory=tuple)
    #: The number of folders the user can see, where the server has folders.
    folder_count: int | None = None
    #: The number of messages, where the server counts them for free (POP3's maildrop).
    message_count: int | None = None
    #: What connecting took, in words (for the report): "TCP, TLS and login", "HTTPS, login, mailbox".
    connect_steps: str = "TCP, TLS and login"
    #: The command a round trip was timed with.
    probe: str = "NOOP"
    #: Over HTTPS: TLS is the HTTP client's (not described here); the greeting names the server.
    https: bool = False


@dataclass(frozen=True)
class Folder:
    """A folder as the server lists it; ``name`` uses ``/`` between levels whatever the server's delimiter."""

    name: str
    delimiter: str | None
    flags: tuple[str, ...] = ()


#: What happened to one message of a bulk call.
ItemStatus = Literal["done", "already_done", "failed"]


@dataclass(frozen=True)
class ItemResult:
    """What happened to one message of a bulk call: done, already done (by an earlier try), or failed.

    ``already_done`` is what a retry reports when it finds its work done, e.g. a move
    that was carried out before the connection dropped: the message is in the target
    (``new_key``), so the bot can go on exactly as after ``done``.
    """

    key: MessageKey
    status: ItemStatus
    detail: str = ""
    new_key: MessageKey | None = None
    #: Why it failed (``status == "failed"``): the error a single call would have raised.
    error: PostroomError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True when the message is now as asked (``done`` or ``already_done``)."""
        return self.status != "failed"


class Mailbox(Protocol):
    """One connection to one mailbox. Not thread-safe: a session serialises calls.

    Each method maps foreign exceptions to :class:`~postroom.errors.PostroomError`
    and raises :class:`~postroom.errors.ConnectionLostError` when the server is gone,
    which tells the session it may reconnect and retry. Bulk methods return one
    :class:`ItemResult` per key, in order.
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

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        """Keys of the messages the server finds for ``filter_`` (a superset), in the filter's order, per folder.

        A filter the server cannot serve (a folder POP3 does not have) raises
        :class:`~postroom.errors.UnsupportedError` before anything is sent.
        """
        ...

    def summaries(self, keys: list[MessageKey], *, bodies: bool = False) -> list[MessageSummary]:
        """Headers, flags, size and structure of ``keys`` (one folder); gone ones are skipped.

        ``bodies=True`` says the caller will read the text bodies: the transport may bring
        along what it can cheaply (see :class:`FetchesBodies`).
        """
        ...

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        """A part's content, transfer encoding undone."""
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


@runtime_checkable
class Folders(Protocol):
    """A mailbox with folders (POP3 has only the inbox)."""

    def folders(self, pattern: str = "*") -> list[Folder]:
        """Folders matching ``pattern`` (``*`` any depth, ``%`` one level)."""
        ...


@runtime_checkable
class CreatesFolders(Protocol):
    """A mailbox that can create folders."""

    def create_folder(self, name: str) -> Folder:
        """Create ``name`` (``/`` between levels, parents included); an existing folder is returned as is."""
        ...


@runtime_checkable
class ManagesFolders(Protocol):
    """A mailbox that renames and deletes folders."""

    def rename_folder(self, name: str, new_name: str) -> Folder:
        """Rename (or move, when the levels above differ) ``name``, with its subfolders and messages."""
        ...

    def delete_folder(self, name: str) -> None:
        """Delete ``name`` and the messages in it, for good (the caller deletes its subfolders first)."""
        ...


@runtime_checkable
class Flags(Protocol):
    """A mailbox that keeps a read status per message."""

    def set_seen(self, keys: list[MessageKey], seen: bool) -> list[ItemResult]:
        """Mark read or unread."""
        ...


@runtime_checkable
class Keywords(Protocol):
    """A mailbox that sets flags other than read on a message: ``\\Flagged``, ``\\Answered``, ``\\Draft``, and
    keywords (``$Label1``, ``Invoice``) where the server keeps them (IMAP)."""

    def set_flags(self, keys: list[MessageKey], flags: tuple[str, ...], on: bool) -> list[ItemResult]:
        """Add (``on``) or remove ``flags``, checked by :func:`check_flag_names` before anything is sent."""
        ...


#: Flags the dedicated actions own: read status (mark_read) and deletion (delete).
_OWNED_FLAGS = {"\\seen": "mark_read/mark_unread", "\\deleted": "delete", "\\recent": "nobody (the server sets it)"}
# an IMAP atom (RFC 3501 §9): no space, CTL, ( ) { % * " \ ]
_ATOM_REST = r"[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]*"
_FLAG_NAME = re.compile(rf"^(\\(Flagged|Answered|Draft)|[A-Za-z0-9$_.&+-]{_ATOM_REST})$")


def check_flag_names(flags: tuple[str, ...]) -> tuple[str, ...]:
    """``flags`` if each is a system flag postroom sets this way or a keyword (an IMAP atom); a
    :class:`~postroom.errors.ConfigError` naming the bad one otherwise."""
    from postroom.errors import ConfigError

    if not flags:
        raise ConfigError("flags", "no flag given", hint="e.g. '\\Flagged' or a keyword such as 'Invoice'")
    for flag in flags:
        owner = _OWNED_FLAGS.get(flag.lower()) if isinstance(flag, str) else None
        if owner is not None:
            raise ConfigError("flags", f"{flag} is set with {owner}", hint="use that action instead")
        if not isinstance(flag, str) or not _FLAG_NAME.match(flag):
            raise ConfigError(
                "flags",
                f"{flag!r} is not a flag name",
                hint="\\Flagged, \\Answered, \\Draft, or a keyword of letters, digits and $_.&+- (no spaces)",
            )
    return flags


@runtime_checkable
class Moves(Protocol):
    """A mailbox that moves messages between folders, server-side."""

    def move(self, keys: list[MessageKey], folder: str) -> list[ItemResult]:
        """Move to ``folder``; each result carries the message's new key where the server tells it."""
        ...


@runtime_checkable
class Deletes(Protocol):
    """A mailbox that deletes messages."""

    def delete(self, keys: list[MessageKey]) -> list[ItemResult]:
        """Delete for good (POP3: committed when the session disconnects)."""
        ...


@runtime_checkable
class Appends(Protocol):
    """A mailbox that stores messages it is given (a copy of what was sent, in Sent)."""

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        """Store ``raw`` in ``folder``."""
        ...

    def has_message_id(self, folder: str, message_id: str) -> bool:
        """Whether ``folder`` holds a message with this Message-ID (makes a retried append safe)."""
        ...


@runtime_checkable
class SavesDrafts(Protocol):
    """A mailbox that keeps drafts: a composed message stored, not sent, where its mail clients look."""

    def save_draft(self, raw: bytes) -> str:
        """Store ``raw`` as a draft (IMAP: ``\\Draft`` in the folder flagged ``\\Drafts``); return that folder."""
        ...


@runtime_checkable
class SubmitsMail(Protocol):
    """A mailbox whose server sends mail itself (EWS, Graph), instead of through an SMTP server."""

    def submit(self, raw: bytes, *, save_copy: bool) -> None:
        """Send ``raw`` (recipients from its To, Cc and Bcc headers); keep a copy in Sent when asked."""
        ...


@runtime_checkable
class FetchesBodies(Protocol):
    """A mailbox that fetches the text bodies of many messages in one go."""

    def bodies(self, summaries: list[MessageSummary]) -> dict[tuple[MessageKey, str], bytes]:
        """Text bodies of ``summaries``' messages as ``(key, section) → content, transfer encoding undone``.

        The transport chooses which (within its own size budget); the caller fetches any
        other part on its own with :meth:`Mailbox.part_content`.
        """
        ...


@runtime_checkable
class FetchesAhead(Protocol):
    """A mailbox that can have the next summaries on their way while the caller works (IMAP pipelining)."""

    def fetch_ahead(self, keys: list[MessageKey], *, bodies: bool = False) -> None:
        """Send the request for the summaries of ``keys`` now; :meth:`collect_ahead` reads them."""
        ...

    def collect_ahead(self, keys: list[MessageKey], *, bodies: bool = False) -> list[MessageSummary] | None:
        """What :meth:`fetch_ahead` asked for with the same arguments, or None if a change in between dropped it."""
        ...


@runtime_checkable
class FetchesBodiesAhead(FetchesAhead, FetchesBodies, Protocol):
    """A mailbox that can also have a chunk's text bodies on their way before :meth:`bodies` is called, so a
    loop keeping two chunks ahead never waits for a round trip (IMAP pipelining against a distant server)."""

    def bodies_ahead(self, keys: list[MessageKey], *, bodies: bool = False) -> None:
        """Read the summaries :meth:`fetch_ahead` asked for (kept for :meth:`collect_ahead`) and send the
        request for their text bodies now; a no-op if they were dropped."""
        ...


@runtime_checkable
class ParsesWhole(Protocol):
    """A mailbox that reads whole messages (POP3: no partial fetch) and parses each once, for its structure
    and its parts alike."""

    def structure(self, key: MessageKey, defects: list[str]) -> MimePart:
        """The message's MIME structure (defects met while parsing go to ``defects``)."""
        ...


@runtime_checkable
class ResumesParts(Protocol):
    """A mailbox that carries on streaming a part where a dropped connection stopped it (IMAP partial fetch)."""

    def stream_part_from(self, key: MessageKey, part: MimePart, write: Callable[[bytes], object], skip: int) -> int:
        """Write the part's decoded content after its first ``skip`` bytes; return how many bytes it wrote."""
        ...


@runtime_checkable
class Syncs(Protocol):
    """A mailbox that tells what is new in a folder since a saved position (Graph delta; IMAP could with
    UIDVALIDITY/UIDNEXT or CONDSTORE, EWS with SyncFolderItems).

    A position is the transport's own JSON, kept by the caller between runs. When the server has
    forgotten it (Graph's ``410 SyncStateNotFound``), the transport lists the folder again and
    returns only what the position had not seen: nothing comes twice, nothing is skipped.
    """

    def changes(self, filter_: MessageFilter, position: dict[str, Any] | None) -> tuple[KeyRun, dict[str, Any]]:
        """Keys of the messages of ``filter_.folder`` new since ``position`` (None: every message there now),
        in the filter's order, and the position to keep once they are handled."""
        ...


@runtime_checkable
class Watches(Protocol):
    """A mailbox that tells cheaply whether a folder changed, and can wait for the server to say so (IMAP
    STATUS and IDLE)."""

    def folder_state(self, folder: str) -> str:
        """A token that differs whenever messages arrive in or leave ``folder``."""
        ...

    def wait_for_change(self, folder: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the server to report a change in ``folder``; True if it did.
        Returns False within about :data:`STOP_CHECK_EVERY` seconds once ``stop`` is set."""
        ...


@runtime_checkable
class ClaimsOnServer(Protocol):
    """A mailbox whose server can set a keyword as a compare-and-set (IMAP CONDSTORE): bots of deployments
    that share no ledger agree on which one takes a message."""

    def claim_on_server(self, key: MessageKey, keyword: str, mine: str) -> bool:
        """Set ``keyword`` and this deployment's ``mine`` on the message if nobody has set ``keyword``; True if
        this call set them, or an earlier call of this deployment did (``mine`` is there already)."""
        ...


#: An ability → what a session lacking it "has no" of, for error messages.
ABILITY_NAMES: dict[type, str] = {
    Folders: "folders",
    CreatesFolders: "folder creation",
    ManagesFolders: "renaming or deleting of folders",
    Flags: "read status",
    Keywords: "flags other than read",
    Moves: "moves",
    Deletes: "deletion",
    Appends: "way to store messages",
    SavesDrafts: "drafts",
    SubmitsMail: "sending of its own",
    FetchesBodies: "bulk body fetch",
    FetchesAhead: "pipelining",
    FetchesBodiesAhead: "pipelined body fetch",
    ParsesWhole: "whole-message parsing",
    ResumesParts: "resumable downloads",
    Syncs: "incremental loops",
    Watches: "change notifications",
    ClaimsOnServer: "conditional stores (CONDSTORE)",
}
