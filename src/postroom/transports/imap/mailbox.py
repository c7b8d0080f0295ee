"""IMAP4rev1 over implicit TLS or STARTTLS, on the stdlib's ``imaplib``.

Reading is structure-first: one chunked ``UID FETCH`` brings flags, size, date,
BODYSTRUCTURE and the few header fields a loop needs; a body part is fetched only
when asked for, and attachments stream in ranges. Reading uses EXAMINE and
``BODY.PEEK``, so it never changes a flag. Writing addresses messages by
``(folder, UIDVALIDITY, UID)`` only, and never sends a bare EXPUNGE.

``imaplib`` does not quote arguments or reject line breaks (before CPython 3.13's
2026 backports), so every user value goes through :mod:`imap_syntax`.
"""

from __future__ import annotations

import array
import contextlib
import datetime as dt
import imaplib
import socket
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, TypeVar, cast

from postroom.auth.base import Login, TokenLogin
from postroom.config import EmailServer
from postroom.errors import AuthenticationError, ConnectionLostError, ProtocolError, StartTLSError, UnsupportedError
from postroom.filters import MessageFilter
from postroom.logs import get_logger
from postroom.message.decode import StreamDecoder, decode_body
from postroom.message.keys import KeyRun
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.call_options import call_option
from postroom.transports.contract import Folder, ItemResult, ServerReport
from postroom.transports.errors import StageTracker, mapped_errors, server_text, tracker_for
from postroom.transports.imap.fetch import FetchAhead, ResponseParts, pipelined_fetch
from postroom.transports.imap.folders import normal_inbox, parse_list, user_path
from postroom.transports.imap.keys import ImapKey, UidRun
from postroom.transports.imap.response import items_of, parse_fetch
from postroom.transports.imap.search import search_criteria
from postroom.transports.imap.summary import summary_of_response
from postroom.transports.imap.syntax import chunked, copyuid, mailbox_arg, quote, uid_set
from postroom.transports.sasl import OAuthExchange, choose_mechanism, oauth_login
from postroom.transports.sockets import open_socket
from postroom.transports.tls import client_context, describe_tls

__all__ = ["HEADER_FIELDS", "ImapMailbox"]

_log = get_logger("postroom.imap")
T = TypeVar("T")

#: Header fields fetched with every message in a loop.
HEADER_FIELDS = "FROM TO CC BCC REPLY-TO SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES"
_SUMMARY_ITEMS = f"(UID FLAGS RFC822.SIZE INTERNALDATE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS ({HEADER_FIELDS})])"
#: UIDs per FETCH command: bounds the command length and the memory of one response.
SUMMARY_CHUNK = 250
#: Bytes per partial fetch when streaming an attachment.
STREAM_CHUNK = 1 << 20
_WRITE_CHUNK = 1000
#: Bytes of section 1 fetched with each summary when the caller reads bodies (a text body is usually there).
FIRST_SECTION_BYTES = 16 * 1024
#: Body parts larger than this are fetched on their own, never in bulk with a chunk's.
BULK_BODY_LIMIT = 256 * 1024
#: At most this many bytes of bodies are fetched in bulk for one chunk (bounds memory; the rest come one by one).
BULK_BODY_BUDGET = 24 * 1024 * 1024
#: Longest response line accepted (a UID SEARCH result is one line).
MAX_LINE = 64 * 1024 * 1024


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
        line = cast(BinaryIO, self.file).readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise self.error(f"the server sent a line of more than {MAX_LINE} bytes")
        return line


class ImapMailbox:
    """An IMAP connection for one session."""

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
        self._ahead: _Ahead | None = None

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
        self._ahead = None
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
        self._ahead = None  # LOGOUT reads past replies still on the way
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
        if self._ahead is not None and not self._ahead.fetch.read_yet:
            self._read_ahead(self._ahead)
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
        self._ahead = None
        _shutdown(client)

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
        """A user's folder path (``Inbox/Projects``) in the server's terms (``INBOX.Projects``)."""
        return user_path(folder).replace("/", self._server_delimiter() or "/")

    def folders(self, pattern: str = "*") -> list[Folder]:
        delimiter = self._server_delimiter() or "/"
        lines = self._ok("LIST", quote(""), mailbox_arg(self._server_name(pattern) if pattern != "*" else "*"))
        return parse_list(lines, delimiter)

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
        self._selected = (folder, writable)
        return self._uidvalidity

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

    # -- reading ------------------------------------------------------------------------------

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        runs: list[KeyRun] = []
        for folder in self._folders_for(filter_):
            validity = self._select(folder, writable=False)
            runs.append(UidRun(folder, validity, self._search_uids(filter_)))
        return runs

    def _search_uids(self, filter_: MessageFilter) -> array.array[int]:
        """UIDs the server finds, newest (highest UID: latest to arrive in the folder) first when asked."""
        criteria = search_criteria(filter_)
        for attempt in (criteria, criteria.without_literal()):
            charset = ("CHARSET", attempt.charset) if attempt.charset else ()
            typ, data = self._uid("SEARCH", *charset, *attempt.args, literal=attempt.literal)
            if typ == "OK":
                found = sorted(
                    (int(token) for line in data if isinstance(line, bytes) for token in line.split()),
                    reverse=filter_.order == "newest",
                )
                return array.array("I", found)
            if attempt.literal is None or "BADCHARSET" not in server_text(data).upper():
                raise ProtocolError(f"SEARCH failed: {server_text(data)}")
            _log.info("server refused UTF-8 search (%s); filtering on the client", server_text(data))
        return array.array("I")

    def summaries(self, keys: list[ImapKey], *, bodies: bool = False) -> list[MessageSummary]:
        """Summaries of ``keys``; with ``bodies``, also the first bytes of section 1, in the same FETCH
        (where a text body usually is: a loop that reads bodies saves a round trip per chunk)."""
        if not keys:
            return []
        self._select_for(keys, writable=False)
        chunks = self._fetch_many([key.uid for key in keys], _summary_request(bodies), _summary_parser(keys))
        return self._summaries_of(keys, (summary for chunk in chunks for summary in chunk))

    def fetch_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> None:
        """Send the summaries request for ``keys`` now, to be collected by :meth:`collect_ahead`.

        Until then the server works while the caller does other things. A read-only command
        sent meanwhile reads these replies first and keeps them; a change to any mailbox
        (flags, move, delete, append) drops them, so a loop never yields a message from
        before a change its own body made.
        """
        if not keys:
            return
        self._select_for(keys, writable=False)
        client = self._require()
        client.untagged_responses.clear()
        sets = [uid_set(chunk) for chunk in chunked([key.uid for key in keys], SUMMARY_CHUNK)]
        with self._in_flight(client):
            fetch = FetchAhead(client, sets, _summary_request(bodies), _summary_parser(keys))
            self._ahead = _Ahead(keys, bodies, fetch)

    def collect_ahead(self, keys: list[ImapKey], *, bodies: bool = False) -> list[MessageSummary] | None:
        """The summaries sent for by :meth:`fetch_ahead` with these arguments, or None if they were dropped."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        responses = self._read_ahead(ahead)
        if ahead.keys != keys or ahead.bodies != bodies:
            return None
        return self._summaries_of(keys, responses)

    def _read_ahead(self, ahead: _Ahead) -> list[MessageSummary | None]:
        client = self._client
        if client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        with self._in_flight(client):
            return ahead.fetch.responses(client)

    def _forget_ahead(self) -> None:
        """Before a change: replies fetched ahead may describe a message the change affects."""
        if self._ahead is not None:
            self._require()
            self._ahead = None

    @staticmethod
    def _summaries_of(keys: list[ImapKey], summaries: Iterable[MessageSummary | None]) -> list[MessageSummary]:
        """``keys``' summaries in their order (the server may answer in any order, or add others)."""
        wanted = {key.uid for key in keys}
        found: dict[object, MessageSummary] = {}
        for summary in summaries:
            if summary is not None and summary.key.id in wanted:
                found[summary.key.id] = summary
        return [found[key.uid] for key in keys if key.uid in found]

    def _fetch_many(self, uids: list[int], request: str, parse: Callable[[ResponseParts], T]) -> Iterator[list[T]]:
        """Pipelined UID FETCH in chunks (any failure drops the connection)."""
        client = self._require()
        client.untagged_responses.clear()
        sets = [uid_set(chunk) for chunk in chunked(uids, SUMMARY_CHUNK)]
        with self._in_flight(client):
            yield from pipelined_fetch(client, sets, request, parse)

    def _fetch_one(self, key: ImapKey, item: str) -> bytes:
        self._select_for([key], writable=False)
        typ, data = self._uid("FETCH", str(key.uid), f"(UID {item})")
        if typ != "OK":
            raise ProtocolError(f"FETCH failed: {server_text(data)}")
        for items in parse_fetch(data):
            for name, value in items.items():
                if name.startswith(("BODY[", "BINARY[")) and isinstance(value, bytes):
                    return bytes(value)
                if name.startswith(("BODY[", "BINARY[")) and value is None:
                    return b""
        raise _gone(key)

    def part_content(self, key: ImapKey, part: MimePart) -> bytes:
        data = self._fetch_one(key, f"BODY.PEEK[{part.fetch_section}]")
        decoder = StreamDecoder(part.encoding)
        return decoder.feed(data) + decoder.finish()

    def bodies(self, summaries: list[MessageSummary]) -> dict[tuple[ImapKey, str], bytes]:
        """The text bodies of a chunk: from the section 1 bytes that came with a summary when they are the
        whole part, else one FETCH per section for all of them, within :data:`BULK_BODY_BUDGET`."""
        wanted: dict[str, list[ImapKey]] = {}
        encodings: dict[tuple[ImapKey, str], str] = {}
        found: dict[tuple[ImapKey, str], bytes] = {}
        budget = BULK_BODY_BUDGET
        for summary in summaries:
            if summary.structure is None:
                continue
            plain, html = summary.structure.body_parts()
            part = plain or html
            if part is None or part.size > BULK_BODY_LIMIT:
                continue
            key = cast(ImapKey, summary.key)
            encodings[(key, part.section)] = part.encoding
            first = summary.body_start
            if first is not None and part.fetch_section == "1" and len(first) >= part.size:
                found[(key, part.section)] = first  # came with the summary, complete
            elif budget >= part.size:
                budget -= part.size
                wanted.setdefault(part.section, []).append(key)
        for section, keys in wanted.items():
            for key, data in self._sections(keys, section or "1").items():
                found[(key, section)] = data
        return {where: decode_body(data, encodings[where]) for where, data in found.items()}

    def _sections(self, keys: list[ImapKey], section: str) -> dict[ImapKey, bytes]:
        """The same section of many messages (one folder) in one FETCH per chunk, still encoded."""
        if not keys:
            return {}
        self._select_for(keys, writable=False)
        by_uid = {key.uid: key for key in keys}
        found: dict[ImapKey, bytes] = {}
        for responses in self._fetch_many(list(by_uid), f"(UID BODY.PEEK[{section}])", items_of):
            for items in responses:
                uid = items.get("UID")
                body = next((v for n, v in items.items() if n.startswith("BODY[")), None)
                if isinstance(uid, bytes) and uid.isdigit() and int(uid) in by_uid:
                    found[by_uid[int(uid)]] = bytes(body) if isinstance(body, bytes) else b""
        return found

    def stream_part(self, key: ImapKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        decoder = StreamDecoder(part.encoding)
        offset = total = 0
        while True:
            chunk = self._fetch_one(key, f"BODY.PEEK[{part.fetch_section}]<{offset}.{STREAM_CHUNK}>")
            decoded = decoder.feed(chunk)
            write(decoded)
            total += len(decoded)
            offset += len(chunk)
            if len(chunk) < STREAM_CHUNK:
                break
        tail = decoder.finish()
        write(tail)
        return total + len(tail)

    def header_block(self, key: ImapKey) -> bytes:
        return self._fetch_one(key, "BODY.PEEK[HEADER]")

    def raw(self, key: ImapKey) -> bytes:
        return self._fetch_one(key, "BODY.PEEK[]")

    # -- writing ------------------------------------------------------------------------------

    def _existing(self, keys: list[ImapKey]) -> set[int]:
        uids: set[int] = set()
        for chunk in chunked([key.uid for key in keys], _WRITE_CHUNK):
            typ, data = self._uid("SEARCH", "UID", uid_set(chunk))
            if typ != "OK":
                raise ProtocolError(f"SEARCH failed: {server_text(data)}")
            uids.update(int(t) for line in data if isinstance(line, bytes) for t in line.split())
        return uids

    def _by_folder(
        self, keys: list[ImapKey], action: Callable[[list[ImapKey]], dict[ImapKey, ItemResult]]
    ) -> list[ItemResult]:
        """Run ``action`` per folder; return one result per key, in input order."""
        self._forget_ahead()
        results: dict[ImapKey, ItemResult] = {}
        for folder in dict.fromkeys(key.folder for key in keys):
            group = [key for key in keys if key.folder == folder]
            self._select_for(group, writable=True)
            existing = self._existing(group)
            present = [key for key in group if key.uid in existing]
            for key in group:
                if key.uid not in existing:
                    results[key] = ItemResult(key, "failed", "not found: already moved or deleted", error=_gone(key))
            if present:
                results.update(action(present))
        return [results[key] for key in keys]

    def _store(self, keys: list[ImapKey], change: str) -> None:
        for chunk in chunked([key.uid for key in keys], _WRITE_CHUNK):
            typ, data = self._uid("STORE", uid_set(chunk), change)
            if typ != "OK":
                raise ProtocolError(f"STORE failed: {server_text(data)}")

    def set_seen(self, keys: list[ImapKey], seen: bool) -> list[ItemResult]:
        change = "+FLAGS.SILENT (\\Seen)" if seen else "-FLAGS.SILENT (\\Seen)"

        def mark(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            self._store(present, change)
            return {key: ItemResult(key, "done", "marked read" if seen else "marked unread") for key in present}

        return self._by_folder(keys, mark)

    def _expunge(self, keys: list[ImapKey], *, allow_expunge_all: bool) -> None:
        """Expunge exactly ``keys``: UID EXPUNGE, or (opted in) EXPUNGE with others' \\Deleted lifted first."""
        if "UIDPLUS" in self._capabilities:
            for chunk in chunked([key.uid for key in keys], _WRITE_CHUNK):
                typ, data = self._uid("EXPUNGE", uid_set(chunk))
                if typ != "OK":
                    raise ProtocolError(f"UID EXPUNGE failed: {server_text(data)}")
            return
        if not allow_expunge_all:
            raise UnsupportedError(
                "the server offers neither MOVE nor UIDPLUS, so removing these messages would need a bare "
                "EXPUNGE, which can remove other messages marked \\Deleted; nothing was changed",
                hint="pass allow_expunge_all=True (CLI: --allow-expunge-all) to accept that risk",
            )
        mine = {key.uid for key in keys}
        typ, data = self._uid("SEARCH", "DELETED")
        others = [int(t) for line in data if isinstance(line, bytes) for t in line.split() if int(t) not in mine]
        if others:
            self._uid("STORE", uid_set(others), "-FLAGS.SILENT (\\Deleted)")
        try:
            self._call(lambda c: c._simple_command("EXPUNGE"))
        finally:
            if others:
                self._uid("STORE", uid_set(others), "+FLAGS.SILENT (\\Deleted)")

    def move(self, keys: list[ImapKey], folder: str) -> list[ItemResult]:
        allow_expunge_all = bool(call_option("allow_expunge_all", False))
        target = mailbox_arg(self._server_name(folder))
        use_move = "MOVE" in self._capabilities
        if not use_move and "UIDPLUS" not in self._capabilities and not allow_expunge_all:
            self._expunge([], allow_expunge_all=False)  # raises the explanation before any change

        def move_group(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            new_uids: dict[int, int] = {}
            validity = 0
            for chunk in chunked([key.uid for key in present], _WRITE_CHUNK):
                command = "MOVE" if use_move else "COPY"
                typ, data = self._uid(command, uid_set(chunk), target)
                if typ != "OK":
                    raise ProtocolError(f"{command} to {folder!r} failed: {server_text(data)}")
                copied = copyuid(self._require().untagged_responses.get("OK", []), data)
                if copied is not None:
                    validity, mapping = copied
                    new_uids.update(mapping)
                if not use_move:
                    group = [key for key in present if key.uid in set(chunk)]
                    self._store(group, "+FLAGS.SILENT (\\Deleted)")
                    self._expunge(group, allow_expunge_all=allow_expunge_all)
            return {
                key: ItemResult(
                    key,
                    "done",
                    f"moved to {folder}",
                    ImapKey(normal_inbox(folder), validity, new_uids[key.uid]) if key.uid in new_uids else None,
                )
                for key in present
            }

        return self._by_folder(keys, move_group)

    def delete(self, keys: list[ImapKey]) -> list[ItemResult]:
        allow_expunge_all = bool(call_option("allow_expunge_all", False))
        if "UIDPLUS" not in self._capabilities and not allow_expunge_all:
            self._expunge([], allow_expunge_all=False)

        def delete_group(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            self._store(present, "+FLAGS.SILENT (\\Deleted)")
            self._expunge(present, allow_expunge_all=allow_expunge_all)
            return {key: ItemResult(key, "done", "deleted") for key in present}

        return self._by_folder(keys, delete_group)

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        self._forget_ahead()
        target = mailbox_arg(self._server_name(folder))
        flags = "(\\Seen)" if seen else None
        stamp = imaplib.Time2Internaldate(dt.datetime.now(dt.UTC))
        typ, data = self._call(lambda c: c.append(target, flags, stamp, raw))
        if typ != "OK":
            raise ProtocolError(f"APPEND to {folder!r} failed: {server_text(data)}")

    def has_message_id(self, folder: str, message_id: str) -> bool:
        self._select(folder, writable=False)
        _typ, data = self._uid("SEARCH", "HEADER", "Message-ID", quote(message_id))
        return any(chunk and bytes(chunk).split() for chunk in data)


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class _Ahead:
    """A summaries FETCH sent before it is wanted, with what it was sent for."""

    keys: list[ImapKey]
    bodies: bool
    fetch: FetchAhead[MessageSummary | None]


def _summary_parser(keys: list[ImapKey]) -> Callable[[ResponseParts], MessageSummary | None]:
    folder, validity = keys[0].folder, keys[0].uidvalidity
    return lambda parts: summary_of_response(parts, folder, validity)


def _summary_request(bodies: bool) -> str:
    return f"{_SUMMARY_ITEMS[:-1]} BODY.PEEK[1]<0.{FIRST_SECTION_BYTES}>)" if bodies else _SUMMARY_ITEMS


def _gone(key: ImapKey) -> ProtocolError:
    return ProtocolError(
        f"message {key} is no longer in {key.folder!r}", hint="it was moved or deleted after the loop listed it"
    )


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
