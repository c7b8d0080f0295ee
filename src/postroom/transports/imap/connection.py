"""IMAP: the connection (TLS or STARTTLS, login, SASL OAuth2, capabilities) and folder selection.

``imaplib`` does not quote arguments or reject line breaks (before CPython 3.13's
2026 backports), so every user value goes through :mod:`postroom.transports.imap.syntax`.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, TypeVar, cast

from postroom.auth.base import Login, TokenLogin
from postroom.config import EmailServer
from postroom.errors import AuthenticationError, ConnectionLostError, ProtocolError, StartTLSError
from postroom.filters import MessageFilter
from postroom.logs import get_logger
from postroom.message.summary import MessageSummary
from postroom.transports.contract import Folder, ServerReport
from postroom.transports.errors import StageTracker, mapped_errors, server_text, tracker_for
from postroom.transports.imap.fetch import FetchAhead, ResponseParts, pipelined_fetch
from postroom.transports.imap.folders import parse_list, user_path
from postroom.transports.imap.keys import ImapKey
from postroom.transports.imap.syntax import chunked, mailbox_arg, quote, uid_set
from postroom.transports.lines import read_line
from postroom.transports.sasl import OAuthExchange, choose_mechanism, oauth_login
from postroom.transports.sockets import open_socket
from postroom.transports.tls import client_context, describe_tls

__all__ = ["HEADER_FIELDS", "ImapConnection"]

_log = get_logger("postroom.imap")
T = TypeVar("T")

#: Header fields fetched with every message in a loop.
HEADER_FIELDS = "FROM TO CC BCC REPLY-TO SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES"
_SUMMARY_ITEMS = f"(UID FLAGS RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"
#: UIDs per FETCH command: bounds the command length and the memory of one response.
SUMMARY_CHUNK = 250
#: Bytes per partial fetch when streaming an attachment (halved after each drop, down to MIN_STREAM_CHUNK).
STREAM_CHUNK = 1 << 20
MIN_STREAM_CHUNK = 64 << 10
_WRITE_CHUNK = 1000
#: Bytes of section 1 fetched with each summary when the caller reads bodies (a text body is usually there).
FIRST_SECTION_BYTES = 16 * 1024
#: Body parts larger than this are fetched on their own, never in bulk with a chunk's.
BULK_BODY_LIMIT = 256 * 1024
#: At most this many bytes of bodies are fetched in bulk for one chunk (bounds memory; the rest come one by one).
BULK_BODY_BUDGET = 24 * 1024 * 1024


class _Client(imaplib.IMAP4):
    """``imaplib.IMAP4`` whose socket comes from :func:`open_socket` (stages, timeouts, TLS)."""

    def __init__(self, where: StageTracker, implicit_tls: ssl.SSLContext | None) -> None:
        self._where = where
        self._implicit_tls = implicit_tls
        super().__init__(where.host, where.port, timeout=where.connect_timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return open_socket(self._where, self._implicit_tls)

    def readline(self) -> bytes:
        """One response line. imaplib stops at 1 MB, less than a SEARCH result for ~150,000 messages."""
        return read_line(cast(BinaryIO, self.file), cut=self.abort, too_long=self.abort)


class ImapConnection:
    """An IMAP connection: connect, log in, select folders; :class:`ImapMailbox` adds reading and writing."""

    protocol = "imap"

    def __init__(self, config: EmailServer, login: Login) -> None:
        self.config = config
        self._login = login
        self._client: _Client | None = None
        self._capabilities: tuple[str, ...] = ()
        self._where = tracker_for(config)
        self._delimiter: str | None = None
        self._selected: tuple[str, bool] | None = None  # (folder, writable)
        self._uidvalidity: int = 0
        #: UIDNEXT when the folder was selected: a key at or above it arrived since (see :meth:`_select_for`).
        self._uidnext: int = 0
        #: FETCH commands sent ahead whose replies are not read yet, in the order they were sent.
        self._ahead: deque[_Ahead] = deque()
        #: Summary requests sent ahead and not yet collected (read or not): ``(keys, bodies)``.
        self._collectable: list[tuple[list[ImapKey], bool]] = []
        #: Changes sent whose OK never came (the connection dropped): a retry checks what really happened.
        #: Kept across a reconnect, as the session reopens this same object.
        self.pending: dict[ImapKey, PendingChange] = {}
        #: Summaries that arrived before a dropped connection, kept across the reconnect for the repeat.
        self.salvaged: dict[ImapKey, MessageSummary] = {}
        #: Body sections that arrived before a dropped connection, likewise (``(key, section)`` -> bytes).
        self.salvaged_sections: dict[tuple[ImapKey, str], bytes] = {}
        #: The part being streamed, and how far it got (a repeat after a drop carries on from there).
        self._stream: tuple[ImapKey, str, Any] | None = None
        self.stream_chunk = STREAM_CHUNK

    # -- connection -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None

    @property
    def capabilities(self) -> tuple[str, ...]:
        """Capabilities after login (MOVE, UIDPLUS, ... appear only then)."""
        return self._capabilities

    def open(self) -> None:
        config = self.config
        context = client_context(verify=config.verify_certificate, ca_file=config.ca_file)
        self._where = where = tracker_for(config)
        self._selected = None
        self._forget_in_flight()
        with mapped_errors(where, "imap"):
            client = _Client(where, context if config.security == "ssl" else None)
            try:
                if config.security == "starttls":
                    where.stage = "starttls"
                    if "STARTTLS" not in client.capabilities:
                        raise StartTLSError(
                            "the server does not offer STARTTLS",
                            hint="postroom never falls back to plaintext: use security='ssl' "
                            "(usually port 993), or security='none' on a trusted test network only",
                        )
                    client.starttls(context)
                where.stage = "login"
                self._authenticate(client)
                where.stage = "command"
            except BaseException:
                _shutdown(client)
                raise
        self._client = client
        _log.debug("connected to %s", config.address)

    def _authenticate(self, client: _Client) -> None:
        if isinstance(self._login, TokenLogin):
            self._authenticate_oauth(client, self._login)
            return
        username = self._login.username.reveal()
        password = self._login.password.reveal()
        if "AUTH=PLAIN" in client.capabilities:
            payload = f"\0{username}\0{password}".encode()
            typ, data = client.authenticate("PLAIN", lambda _challenge: payload)
        elif "LOGINDISABLED" in client.capabilities:
            raise AuthenticationError(
                "the server refuses LOGIN on this connection (LOGINDISABLED) and offers no AUTH=PLAIN",
                hint="use security='ssl' or 'starttls'",
            )
        elif not (username.isascii() and password.isascii()):
            raise AuthenticationError(
                "the username or password has non-ASCII characters and the server offers no AUTH=PLAIN",
                hint="IMAP LOGIN carries ASCII only; ask for AUTH=PLAIN or use an ASCII password",
            )
        else:
            typ, data = client._simple_command("LOGIN", quote(username), quote(password))
            if typ != "OK":
                raise client.error(data[-1] if data else "LOGIN failed")
            client.state = "AUTH"
        self._capabilities = _capabilities_after_login(client, data)

    def _authenticate_oauth(self, client: _Client, login: TokenLogin) -> None:
        offered = [c.removeprefix("AUTH=") for c in client.capabilities if c.startswith("AUTH=")]
        mechanism = choose_mechanism(offered, "imap")
        replies: list[Any] = []

        def attempt(exchange: OAuthExchange) -> None:
            try:
                replies[:] = client.authenticate(mechanism, exchange.respond)[1]
            except client.error as refused:
                raise exchange.failure(server_text(refused.args[0] if refused.args else refused)) from None

        assert self.config.host is not None and self.config.port is not None
        oauth_login(login, mechanism, attempt, host=self.config.host, port=self.config.port)
        self._capabilities = _capabilities_after_login(client, replies)

    def close(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        self._forget_in_flight()  # LOGOUT reads past replies still on the way
        if client is not None:
            try:
                client.logout()
            except Exception as exc:  # closing is best effort
                _log.debug("logout from %s failed: %s", self.config.address, type(exc).__name__)
            _shutdown(client)

    def _require(self) -> _Client:
        """The connection, ready for a command: replies to a FETCH sent ahead are read (and kept) first."""
        if self._client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        if self._ahead:
            self._read_ahead()
        return self._client

    def _call(self, action: Callable[[_Client], tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
        """Run one imaplib call with errors mapped; a dropped connection marks us closed."""
        client = self._require()
        client.untagged_responses.clear()  # imaplib keeps them forever otherwise
        try:
            with mapped_errors(self._where, "imap"):
                return action(client)
        except ConnectionLostError:
            self._drop(client)
            raise

    def _drop(self, client: _Client) -> None:
        """Forget a connection whose state is unknown; the session reconnects on next use."""
        self._client = None
        self._selected = None
        self._forget_in_flight()
        _shutdown(client)

    def _forget_in_flight(self) -> None:
        """No replies are on their way (a new or lost connection): nothing sent ahead is left to collect."""
        self._ahead.clear()
        self._collectable.clear()

    @contextlib.contextmanager
    def _in_flight(self, client: _Client) -> Iterator[None]:
        """Errors mapped; any failure drops the connection (with commands in flight, its state is unknown)."""
        try:
            with mapped_errors(self._where, "imap"):
                yield
        except BaseException:
            self._drop(client)
            raise

    def _uid(self, command: str, *args: str, literal: bytes | None = None) -> tuple[str, list[Any]]:
        """``UID <command> <args>``: FETCH/SEARCH/SORT give their untagged data, others the tagged reply."""

        def run(client: _Client) -> tuple[str, list[Any]]:
            client.literal = literal  # type: ignore[assignment]  # imaplib sends bytes literals as they are
            try:
                if command in {"FETCH", "SEARCH", "SORT"}:
                    return client.uid(command, *args)
                typ, data = client._simple_command("UID", command, *args)
                return str(typ), list(data)
            finally:
                client.literal = None

        return self._call(run)

    def _ok(self, name: str, *args: str) -> list[object]:
        """Run a command that must succeed; returns its untagged data of the same name."""
        typ, data = self._call(lambda c: c._simple_command(name, *args))
        if typ != "OK":
            raise ProtocolError(f"{name} failed: {server_text(data)}")
        client = self._require()
        return list(client._untagged_response(typ, data, name)[1])

    def noop(self) -> None:
        self._ok("NOOP")

    def report(self) -> ServerReport:
        client = self._require()
        listing = self._ok("LIST", quote(""), quote("*"))
        tls_version, cipher = describe_tls(client.sock)
        return ServerReport(
            protocol="imap",
            address=self.config.address,
            greeting=server_text(client.welcome),
            tls_version=tls_version,
            cipher=cipher,
            capabilities=self._capabilities,
            folder_count=sum(1 for line in listing if line),
        )

    # -- folders ------------------------------------------------------------------------------

    def _server_delimiter(self) -> str | None:
        if self._delimiter is None:
            lines = self._ok("LIST", quote(""), quote(""))
            folders = parse_list(lines, "/")
            self._delimiter = folders[0].delimiter if folders else "/"
        return self._delimiter

    def _server_name(self, folder: str) -> str:
        """A user's folder path (``Inbox/Projects``) in the server's terms (``INBOX.Projects``); a top-level
        folder needs no delimiter, so a loop over the inbox waits for no LIST round trip."""
        path = user_path(folder)
        return path.replace("/", self._server_delimiter() or "/") if "/" in path else path

    def folders(self, pattern: str = "*") -> list[Folder]:
        lines = self._ok("LIST", quote(""), mailbox_arg(self._server_name(pattern) if pattern != "*" else "*"))
        return parse_list(lines, "/")  # the user's separator, whatever the server's is

    def _folders_for(self, filter_: MessageFilter) -> list[str]:
        """The folders a filter covers: wildcards expanded, subfolders added, in a stable order."""
        if any(ch in filter_.folder for ch in "*%"):
            # a wildcard matches within one level ("Inbox/Proj*"); include_subfolders goes deeper
            level_pattern = filter_.folder.replace("*", "%")
            found = [f.name for f in self.folders(level_pattern) if "\\NOSELECT" not in f.flags]
            if not found:
                raise ProtocolError(f"no folder matches {filter_.folder!r}", hint=self._known_folders())
        else:
            found = [user_path(filter_.folder)]
        if filter_.include_subfolders:
            for base in list(found):
                found += [f.name for f in self.folders(f"{base}/*") if "\\NOSELECT" not in f.flags]
        return list(dict.fromkeys(found))

    def _known_folders(self) -> str:
        names = [f.name for f in self.folders()]
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        return f"folders on this server: {shown}"

    def _select(self, folder: str, *, writable: bool) -> int:
        """Select ``folder`` (EXAMINE when only reading); returns its UIDVALIDITY."""
        if self._selected is not None and self._selected[0] == folder and (self._selected[1] or not writable):
            return self._uidvalidity
        command = "SELECT" if writable else "EXAMINE"
        typ, data = self._call(lambda c: c._simple_command(command, mailbox_arg(self._server_name(folder))))
        client = self._require()
        if typ != "OK":
            self._selected = None
            client.state = "AUTH"
            raise ProtocolError(f"cannot open folder {folder!r}: {server_text(data)}", hint=self._known_folders())
        client.state = "SELECTED"
        validity = client.untagged_responses.get("UIDVALIDITY", [b"0"])[-1]
        self._uidvalidity = int(validity) if isinstance(validity, bytes) and validity.isdigit() else 0
        following = client.untagged_responses.get("UIDNEXT", [b""])[-1]
        # without UIDNEXT (an old server), every key counts as possibly newer: a NOOP before each use
        self._uidnext = int(following) if isinstance(following, bytes) and following.isdigit() else 0
        self._selected = (folder, writable)
        return self._uidvalidity

    def _close_selected(self, folder: str) -> None:
        """Leave ``folder`` (or a folder below it) if it is the selected one, before it is renamed or deleted:
        UNSELECT (RFC 3691), else EXAMINE INBOX; never CLOSE, which would expunge."""
        if self._selected is None:
            return
        current, wanted = self._selected[0].casefold(), user_path(folder).casefold()
        if current != wanted and not current.startswith(wanted + "/"):
            return
        if "UNSELECT" in self._capabilities:
            self._call(lambda c: c._simple_command("UNSELECT"))
            self._require().state = "AUTH"
            self._selected = None
        else:
            self._select("INBOX", writable=False)

    def _select_for(self, keys: Sequence[ImapKey], *, writable: bool) -> None:
        folders = {key.folder for key in keys}
        if len(folders) != 1:
            raise ValueError("keys of one folder at a time")
        folder = folders.pop()
        validity = self._select(folder, writable=writable)
        stale = {key.uidvalidity for key in keys} - {validity}
        if stale:
            raise ProtocolError(
                f"folder {folder!r} was rebuilt on the server (UIDVALIDITY changed), so earlier message keys "
                "no longer name the same messages; nothing was changed",
                hint="run the loop again to get fresh keys",
            )
        newest = max(key.uid for key in keys)
        if newest >= self._uidnext:
            # a message that arrived after this connection selected the folder is not in its view until the
            # server is asked for news (RFC 3501 §5.2): one NOOP, and this connection sees it
            self.noop()
            self._uidnext = newest + 1

    def _read_ahead(self, upto: _Ahead | None = None) -> None:
        """Read the replies of the commands sent ahead, in order, up to ``upto`` (all of them without it);
        each reply's parser keeps what it reads (summaries in :attr:`salvaged`, sections in
        :attr:`salvaged_sections`)."""
        client = self._client
        if client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        with self._in_flight(client):
            while self._ahead:
                ahead = self._ahead[0]
                ahead.fetch.read(client)
                self._ahead.popleft()
                if ahead is upto:
                    return

    def _send_ahead(self, ahead_of: Callable[[_Client], _Ahead]) -> None:
        """Send a FETCH now, its replies to be read after those sent before it (the connection is not drained)."""
        client = self._client
        if client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        with self._in_flight(client):
            self._ahead.append(ahead_of(client))

    def _fetch_many(self, uids: list[int], request: str, parse: Callable[[ResponseParts], T]) -> Iterator[list[T]]:
        """Pipelined UID FETCH in chunks (any failure drops the connection)."""
        client = self._require()
        client.untagged_responses.clear()
        sets = fetch_sets(uids)
        with self._in_flight(client):
            yield from pipelined_fetch(client, sets, request, parse)

    def _forget_ahead(self) -> None:
        """Before a change: replies fetched ahead, or kept from before a drop, may describe a message the
        change affects (body sections do not change, but nobody will ask for them now)."""
        if self._ahead:
            self._require()
        self._collectable.clear()
        self.salvaged.clear()
        self.salvaged_sections.clear()


@dataclass(frozen=True)
class PendingChange:
    """A move or delete sent for one message, not yet known to be done."""

    kind: Literal["move", "delete"]
    #: The target folder of a move.
    folder: str = ""
    #: The message's Message-ID, to find it in the target after a dropped connection.
    message_id: str | None = None


@dataclass(eq=False)
class _Ahead:
    """A FETCH sent before it is wanted, for ``keys``: their summaries (``section`` None), or one body
    ``section`` of each."""

    keys: list[ImapKey]
    fetch: FetchAhead
    section: str | None = None


def _gone(key: ImapKey) -> ProtocolError:
    return ProtocolError(
        f"message {key} is no longer in {key.folder!r}", hint="it was moved or deleted after the loop listed it"
    )


def fetch_sets(uids: list[int]) -> list[str]:
    """UID sets of at most :data:`SUMMARY_CHUNK` UIDs each: one pipelined FETCH command per set."""
    return [uid_set(chunk) for chunk in chunked(uids, SUMMARY_CHUNK)]


def _capabilities_after_login(client: _Client, data: Sequence[object]) -> tuple[str, ...]:
    """Capabilities from the login reply's ``[CAPABILITY ...]`` code, else from a CAPABILITY command."""
    text = data[-1] if data else None
    if isinstance(text, bytes) and text.upper().startswith(b"[CAPABILITY "):
        caps = text[len(b"[CAPABILITY ") :].split(b"]", 1)[0]
        return tuple(caps.decode("ascii", "replace").upper().split())
    typ, reply = client.capability()
    if typ == "OK" and reply and isinstance(reply[-1], bytes):
        return tuple(reply[-1].decode("ascii", "replace").upper().split())
    return tuple(client.capabilities)


def _shutdown(client: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError):
        client.shutdown()
