"""POP3 over implicit TLS or STLS, on the stdlib's ``poplib``.

POP3 has one folder (the maildrop) and no flags. Messages are addressed by UIDL,
never by their number. Deletions are committed by the server only on a clean
QUIT: a deletion lost to a dropped connection is sent again after reconnecting.

A loop costs few round trips: a chunk's TOP commands go out together where the server offers
PIPELINING (RFC 2449), and once a message is read whole the RETR of the next one in the chunk is
sent, so the server sends it while this one is parsed (one command in flight, which every server
allows; none for a message larger than :data:`READ_AHEAD_LIMIT`).
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import poplib
import socket
import ssl
from collections.abc import Callable
from typing import TypeVar, cast

from postroom.auth.base import Login, PasswordLogin, TokenLogin
from postroom.config import EmailServer
from postroom.errors import ConnectionLostError, PostroomError, ProtocolError, StartTLSError, UnsupportedError
from postroom.filters import MessageFilter
from postroom.logs import get_logger
from postroom.message.keys import KeyList, KeyRun
from postroom.message.raw import RawSource
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.contract import ItemResult, ServerReport
from postroom.transports.errors import StageTracker, mapped_errors, server_text, tracker_for
from postroom.transports.lines import read_line
from postroom.transports.pop3.keys import Pop3Key
from postroom.transports.sasl import OAuthExchange, choose_mechanism, oauth_login
from postroom.transports.sockets import open_socket
from postroom.transports.tls import client_context, describe_tls

__all__ = ["Pop3Mailbox"]

_log = get_logger("postroom.pop3")
T = TypeVar("T")


#: The largest multi-line reply read (a whole message on RETR): beyond it the server is taken to be broken.
MAX_REPLY = 1 << 30
#: A message larger than this is not read ahead (its RETR waits until it is asked for).
READ_AHEAD_LIMIT = 8 << 20
#: TOP commands sent together (each batch is one round trip).
PIPELINE_BATCH = 64


class _Client(poplib.POP3):
    """``poplib.POP3`` whose socket comes from :func:`open_socket`."""

    def __init__(self, where: StageTracker, implicit_tls: ssl.SSLContext | None) -> None:
        self._where = where
        self._implicit_tls = implicit_tls
        super().__init__(where.host, where.port, timeout=where.connect_timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return open_socket(self._where, self._implicit_tls)

    # poplib has no AUTH command; these expose the line-level calls it is built from.
    def command(self, line: str) -> bytes:
        """Send a command; its one-line reply (raises ``error_proto`` on ``-ERR``)."""
        reply: bytes = self._shortcmd(line)  # type: ignore[attr-defined]
        return reply

    def send_line(self, line: bytes) -> None:
        self._putline(line)  # type: ignore[attr-defined]

    def read_reply(self) -> bytes:
        reply: bytes = self._getresp()  # type: ignore[attr-defined]
        return reply

    def _getlongresp(self) -> tuple[bytes, list[bytes], int]:
        """poplib's multi-line reply (status, lines, octets), read in blocks rather than line by line."""
        status = self.read_reply()
        body = self._read_body()
        lines = body.split(b"\n")[:-1]
        return status, [line[:-1] if line.endswith(b"\r") else line for line in lines], len(body)

    def retr_bytes(self, number: int) -> bytes:
        """RETR: the message as the server holds it (dot-stuffing undone), in one piece."""
        self._putcmd(f"RETR {number}")  # type: ignore[attr-defined]
        return self.read_long_reply()

    def read_long_reply(self) -> bytes:
        """The status line and the body of a multi-line reply (``error_proto`` on ``-ERR``)."""
        self.read_reply()
        return self._read_body()

    def pipelined(self, commands: list[str]) -> list[bytes | poplib.error_proto]:
        """Send ``commands`` at once (the server offers PIPELINING), then read each one's multi-line reply;
        a refused one (``-ERR``, the connection still in step) is its error in the list."""
        self.sock.sendall("".join(f"{command}\r\n" for command in commands).encode("ascii"))
        replies: list[bytes | poplib.error_proto] = []
        for _command in commands:
            try:
                replies.append(self.read_long_reply())
            except poplib.error_proto as refused:
                if not _in_step(refused):
                    raise
                replies.append(refused)
        return replies

    def _read_body(self) -> bytes:
        """The rest of a multi-line reply up to its terminating ``.`` line, dot-stuffing undone (RFC 1939
        §3), read in blocks. Nothing after the terminator is consumed: with commands pipelined, the next
        reply follows in the same block. A connection that closes before the terminator is a lost
        connection, and a reply larger than :data:`MAX_REPLY` (a server that never stops) cannot be kept
        in step."""
        file = self.file
        buffer = bytearray(b"\n")  # the reply starts at a line start: its first line may be the terminator
        while True:
            view: bytes = file.peek(1 << 16)  # type: ignore[attr-defined]  # a BufferedReader: what is buffered, not consumed
            if not view:
                raise EOFError("the connection closed in the middle of a reply")
            end = _terminator_end(buffer, view)
            if end is not None:
                buffer += file.read(end - len(buffer))
                break
            buffer += file.read(len(view))
            if len(buffer) > MAX_REPLY:
                raise _OutOfStep(f"a reply longer than {MAX_REPLY >> 30} GiB")
        body = bytes(buffer[1 : len(buffer) - (3 if buffer.endswith(b"\n.\r\n") else 2)])
        if b"\n.." in body or body.startswith(b".."):
            body = body.replace(b"\n..", b"\n.")
            if body.startswith(b".."):
                body = body[1:]
        return body

    def _getline(self) -> tuple[bytes, int]:
        """One line of any length (poplib stops at 2,048 bytes, and a message may hold a 100 KB line).

        A line cut off by the connection closing is a lost connection, never a shorter line."""
        line = read_line(self.file, cut=EOFError, too_long=_OutOfStep)
        if line.endswith(b"\r\n"):
            return line[:-2], len(line)
        return (line[1:-1] if line.startswith(b"\r") else line[:-1]), len(line)


_TERMINATORS = (b"\n.\r\n", b"\n.\n")


def _terminator_end(read: bytearray, view: bytes) -> int | None:
    """Where the first terminator line (``.`` alone) ends, counted from the start of ``read`` (the reply so
    far) followed by ``view`` (what comes next); None if ``view`` holds none."""
    tail = bytes(read[-3:])
    base = len(read) - len(tail)
    straddling = tail + view[:3]
    found = [
        (at, len(terminator))
        for terminator in _TERMINATORS
        for at in (straddling.find(terminator),)
        if 0 <= at < len(tail)
    ]
    if not found:
        base = len(read)
        found = [(at, len(t)) for t in _TERMINATORS for at in (view.find(t),) if at >= 0]
    if not found:
        return None
    at, size = min(found)
    return base + at + size


class _OutOfStep(poplib.error_proto):
    """A reply could not be read to its end: the connection can carry no further command."""


def _in_step(error: BaseException) -> bool:
    """Whether the connection is still in step after ``error``: only a complete ``-ERR`` line leaves it so."""
    if not isinstance(error, poplib.error_proto) or isinstance(error, _OutOfStep):
        return False
    reply = error.args[0] if error.args else b""
    return isinstance(reply, bytes) and reply.startswith(b"-ERR") and not reply.startswith(b"-ERR EOF")


def _unsupported(what: str) -> UnsupportedError:
    return UnsupportedError(
        f"POP3 has no {what}",
        hint="connect with protocol='imap' to use folders, read status and moves (nothing was sent to the server)",
    )


class Pop3Mailbox:
    """A POP3 connection for one session."""

    protocol = "pop3"

    def __init__(self, config: EmailServer, login: Login) -> None:
        self.config = config
        self._login = login
        self._client: _Client | None = None
        self._where = tracker_for(config)
        self._numbers: dict[str, int] = {}
        #: Message number → size, from one LIST per connection (not one LIST per message).
        self._sizes: dict[int, int] = {}
        self._pending_deletes: list[str] = []
        self._last_raw: tuple[str, bytes] | None = None
        self._pipelining = False
        #: The message after each one of the last chunk whose summaries were read (what to read ahead).
        self._next_in_chunk: dict[str, str] = {}
        #: The UIDL whose RETR was sent ahead and is not read yet; and one read ahead but not asked for yet.
        self._ahead_sent: str | None = None
        self._ahead_read: tuple[str, bytes] | None = None
        #: The last message RETR brought, parsed once for its structure, body and attachments.
        self._source = RawSource(lambda key: self.raw(cast(Pop3Key, key)))

    @property
    def connected(self) -> bool:
        return self._client is not None

    def open(self) -> None:
        config = self.config
        context = client_context(verify=config.verify_certificate, ca_file=config.ca_file)
        self._where = where = tracker_for(config)
        with mapped_errors(where, "pop3"):
            client = _Client(where, context if config.security == "ssl" else None)
            try:
                if config.security == "starttls":
                    where.stage = "starttls"
                    if "STLS" not in _capa(client):
                        raise StartTLSError(
                            "the server does not offer STLS (POP3 STARTTLS)",
                            hint="postroom never falls back to plaintext: use security='ssl' "
                            "(usually port 995), or security='none' on a trusted test network only",
                        )
                    client.stls(context)
                where.stage = "login"
                pipelining = "PIPELINING" in _capa(client)
                if isinstance(self._login, TokenLogin):
                    _authenticate_oauth(client, self._login, config)
                else:
                    _user_pass(client, self._login)
                where.stage = "command"
            except BaseException:
                _drop(client)
                raise
        self._client = client
        self._pipelining = pipelining
        self._numbers = {}
        self._sizes = {}
        self._ahead_sent = self._ahead_read = None
        if self._pending_deletes:
            resend, self._pending_deletes = self._pending_deletes, []
            _log.warning("re-sending %d deletion(s) the server rolled back when the connection dropped", len(resend))
            self.delete([Pop3Key(uidl) for uidl in resend])
        _log.debug("connected to %s", config.address)

    def close(self) -> None:
        """QUIT (which commits deletions) and close."""
        if self._ahead_sent is not None and self._client is not None:
            with contextlib.suppress(PostroomError):
                self._read_ahead()  # QUIT's reply must not be taken for the RETR's
        self._ahead_sent = self._ahead_read = None
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
                self._pending_deletes = []
            except Exception as exc:
                _log.warning(
                    "QUIT to %s failed (%s): deletions were not committed", self.config.address, type(exc).__name__
                )
                _drop(client)

    def _run(self, action: Callable[[_Client], T]) -> T:
        """``action`` on the connection, once a RETR sent ahead is read (its message kept for :meth:`raw`)."""
        if self._ahead_sent is not None:
            self._read_ahead()
        return self._exchange(action)

    def _read_ahead(self) -> None:
        uidl, self._ahead_sent = self._ahead_sent, None
        try:
            data = self._exchange(lambda c: c.read_long_reply())
        except ConnectionLostError:
            raise
        except PostroomError:  # refused: when the message is asked for, its own RETR says why
            return
        if uidl is not None:
            self._ahead_read = (uidl, data)

    def _exchange(self, action: Callable[[_Client], T]) -> T:
        client = self._client
        if client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        try:
            with mapped_errors(self._where, "pop3"):
                try:
                    return action(client)
                except BaseException as error:
                    if not _in_step(error):  # never send a command after a reply not read to its end
                        self._client = None
                        _drop(client)
                    raise
        except ConnectionLostError:
            self._client = None
            _drop(client)
            raise

    def noop(self) -> None:
        self._run(lambda c: c.noop())

    def report(self) -> ServerReport:
        client = self._run(lambda c: c)
        count, _size = self._run(lambda c: c.stat())
        capabilities = self._run(_capa)
        tls_version, cipher = describe_tls(client.sock)
        return ServerReport(
            protocol="pop3",
            address=self.config.address,
            greeting=server_text(client.welcome),
            tls_version=tls_version,
            cipher=cipher,
            capabilities=tuple(" ".join([name, *args]).upper() for name, args in sorted(capabilities.items())),
            message_count=count,
        )

    # -- reading ------------------------------------------------------------------------------

    def _uidls(self) -> dict[str, int]:
        if not self._numbers:
            _resp, lines, _octets = self._run(lambda c: c.uidl())
            numbers = {}
            for line in lines:
                number, _, uidl = line.decode("ascii", "replace").partition(" ")
                numbers[uidl.strip()] = int(number)
            self._numbers = numbers
        return self._numbers

    def _size_of(self, number: int) -> int:
        if not self._sizes:
            _resp, lines, _octets = self._run(lambda c: c.list())
            for line in lines:
                fields = line.split()
                if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
                    self._sizes[int(fields[0])] = int(fields[1])
        return self._sizes.get(number, 0)

    def _number(self, key: Pop3Key) -> int:
        number = self._uidls().get(key.uidl)
        if number is None or key.uidl in self._pending_deletes:
            raise ProtocolError(f"message {key} is no longer in the maildrop", hint="it was deleted after the loop")
        return number

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        if filter_.folder.upper() != "INBOX" or filter_.include_subfolders:
            raise _unsupported("folders other than the inbox")
        if filter_.status != "all":
            raise _unsupported("read status")
        numbers = sorted(self._uidls().items(), key=lambda item: item[1], reverse=filter_.order == "newest")
        return [KeyList("INBOX", [Pop3Key(uidl) for uidl, _n in numbers if uidl not in self._pending_deletes])]

    def summaries(self, keys: list[Pop3Key], *, bodies: bool = False) -> list[MessageSummary]:
        """The headers of ``keys`` (TOP n 0), PIPELINE_BATCH commands a round trip where the server pipelines."""
        numbers = self._uidls()
        found = [(key, numbers[key.uidl]) for key in keys if key.uidl in numbers]
        self._size_of(0)  # one LIST for the sizes, before any TOP is in flight
        batch = PIPELINE_BATCH if self._pipelining else 1
        out = []
        for start in range(0, len(found), batch):
            group = found[start : start + batch]
            commands = [f"TOP {number} 0" for _key, number in group]
            replies = self._run(lambda c, commands=commands: c.pipelined(commands))  # type: ignore[misc]
            for (key, number), reply in zip(group, replies, strict=True):
                if isinstance(reply, poplib.error_proto):
                    raise ProtocolError(f"TOP of {key} was refused: {server_text(reply.args[0])}")
                header = reply if reply.endswith(b"\n") or not reply else reply + b"\r\n"
                out.append(
                    MessageSummary(key=key, header=header, flags=None, size=self._size_of(number), received=None)
                )
        self._next_in_chunk = {key.uidl: after.uidl for (key, _n), (after, _m) in itertools.pairwise(found)}
        return out

    def raw(self, key: Pop3Key) -> bytes:
        """RETR; the last message is kept, so its structure, body and attachments cost one RETR together.
        The next message of the chunk is then sent for (see the module's notes)."""
        if self._last_raw is not None and self._last_raw[0] == key.uidl:
            return self._last_raw[1]
        if self._ahead_sent == key.uidl:
            self._read_ahead()
        ahead, self._ahead_read = self._ahead_read, None
        if ahead is not None and ahead[0] == key.uidl and key.uidl not in self._pending_deletes:
            data = ahead[1]
        else:
            number = self._number(key)
            data = self._run(lambda c: c.retr_bytes(number))
        self._last_raw = (key.uidl, data)
        self._send_ahead(self._next_in_chunk.get(key.uidl))
        return data

    def _send_ahead(self, uidl: str | None) -> None:
        number = self._numbers.get(uidl) if uidl is not None else None
        if uidl is None or number is None or uidl in self._pending_deletes:
            return
        if self._size_of(number) > READ_AHEAD_LIMIT:
            return
        try:
            self._exchange(lambda c: c._putcmd(f"RETR {number}"))  # type: ignore[attr-defined]
        except PostroomError:  # the connection is gone: the next command finds that out and reconnects
            return
        self._ahead_sent = uidl

    def header_block(self, key: Pop3Key) -> bytes:
        number = self._number(key)
        _resp, lines, _octets = self._run(lambda c: c.top(number, 0))
        return b"\r\n".join(lines) + b"\r\n"

    def part_content(self, key: Pop3Key, part: MimePart) -> bytes:
        return self._source.part_content(key, part)

    def structure(self, key: Pop3Key, defects: list[str]) -> MimePart:
        """The structure from the message read once for its parts too (one RETR, one parse)."""
        return self._source.structure(key, defects)

    def stream_part(self, key: Pop3Key, part: MimePart, write: Callable[[bytes], object]) -> int:
        data = self.part_content(key, part)  # POP3 has no partial fetch: RETR brings the whole message
        write(data)
        return len(data)

    # -- writing ------------------------------------------------------------------------------

    def delete(self, keys: list[Pop3Key]) -> list[ItemResult]:
        results = []
        numbers = self._uidls()
        for key in keys:
            number = numbers.get(key.uidl)
            if key.uidl in self._pending_deletes:
                results.append(ItemResult(key, "already_done", "already deleted in this session"))
                continue
            if number is None:
                gone = ProtocolError(f"message {key} is not in the maildrop", hint="it was deleted by another client")
                results.append(ItemResult(key, "failed", "not found: already deleted", error=gone))
                continue
            self._run(lambda c, n=number: c.dele(n))  # type: ignore[misc]
            self._pending_deletes.append(key.uidl)
            results.append(ItemResult(key, "done", "deleted when the session disconnects (POP3 commits on QUIT)"))
        return results


def _authenticate_oauth(client: _Client, login: TokenLogin, config: EmailServer) -> None:
    """RFC 5034 AUTH with the credentials on the continuation line (tokens exceed the 255-octet command limit).

    poplib treats any reply starting with ``+`` as success, so ``+OK`` (logged in)
    is told apart from ``+ <challenge>`` (the server's error JSON) here.
    """
    mechanism = choose_mechanism(_capa(client).get("SASL", []), "pop3")

    def attempt(exchange: OAuthExchange) -> None:
        try:
            reply = client.command(f"AUTH {mechanism}")
            if reply.startswith(b"+ ") or reply == b"+":
                client.send_line(base64.b64encode(exchange.initial()))
                reply = client.read_reply()
                if reply.startswith(b"+OK"):
                    return
                if reply.startswith(b"+"):  # the error challenge: acknowledge it, then read the -ERR
                    exchange.record_error(reply[1:])
                    client.send_line(base64.b64encode(exchange.error_ack()))
                    reply = client.read_reply()
        except poplib.error_proto as refused:
            reply = refused.args[0] if refused.args else b"-ERR"
        raise exchange.failure(server_text(reply))

    assert config.host is not None and config.port is not None
    oauth_login(login, mechanism, attempt, host=config.host, port=config.port)


def _user_pass(client: _Client, login: PasswordLogin) -> None:
    """USER and PASS. A refusal with ``[LOGIN-DELAY]`` learns the delay from CAPA (RFC 2449), so the
    error can say when to try again."""
    try:
        client.user(login.username.reveal())
        client.pass_(login.password.reveal())
    except poplib.error_proto as refused:
        reply = refused.args[0] if refused.args else b""
        if isinstance(reply, bytes) and b"[LOGIN-DELAY]" in reply.upper():
            with contextlib.suppress(Exception):
                delay = _capa(client).get("LOGIN-DELAY", [])
                if delay and delay[0].isdigit():
                    refused.login_delay = int(delay[0])  # type: ignore[attr-defined]
        raise


def _capa(client: poplib.POP3) -> dict[str, list[str]]:
    try:
        return client.capa()
    except poplib.error_proto:  # CAPA is optional (RFC 2449)
        return {}


def _drop(client: poplib.POP3) -> None:
    """Close without QUIT, so the server rolls back deletions."""
    with contextlib.suppress(OSError):
        client.close()
