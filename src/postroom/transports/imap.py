"""IMAP4rev1 over implicit TLS or STARTTLS, on the stdlib's ``imaplib``.

``imaplib`` does not quote arguments or reject line breaks (before CPython 3.13's
2026 backports), so every user value goes through :func:`quote` here.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Sequence

from postroom.auth.base import PasswordLogin
from postroom.config import EmailServer
from postroom.errors import AuthenticationError, ConnectionLostError, StartTLSError
from postroom.logs import get_logger
from postroom.transports.base import ServerReport
from postroom.transports.errors import StageTracker, mapped_errors, server_text, tracker_for
from postroom.transports.sockets import open_socket
from postroom.transports.tls import client_context, describe_tls

__all__ = ["ImapMailbox", "quote"]

_log = get_logger("postroom.imap")


def quote(value: str) -> str:
    """An RFC 3501 quoted string. Refuses NUL, CR and LF, which would split a command."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("an IMAP argument cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Client(imaplib.IMAP4):
    """``imaplib.IMAP4`` whose socket comes from :func:`open_socket` (stages, timeouts, TLS)."""

    def __init__(self, where: StageTracker, implicit_tls: ssl.SSLContext | None) -> None:
        self._where = where
        self._implicit_tls = implicit_tls
        super().__init__(where.host, where.port, timeout=where.connect_timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        return open_socket(self._where, self._implicit_tls)


class ImapMailbox:
    """An IMAP connection for one session."""

    protocol = "imap"

    def __init__(self, config: EmailServer, login: PasswordLogin) -> None:
        self.config = config
        self._login = login
        self._client: _Client | None = None
        self._capabilities: tuple[str, ...] = ()
        self._where = tracker_for(config)

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
                hint="IMAP LOGIN carries ASCII only; ask the admin to enable AUTH=PLAIN or change the password",
            )
        else:
            typ, data = client._simple_command("LOGIN", quote(username), quote(password))
            if typ != "OK":
                raise client.error(data[-1] if data else "LOGIN failed")
            client.state = "AUTH"
        self._capabilities = _capabilities_after_login(client, data)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.logout()
            except Exception as exc:  # closing is best effort
                _log.debug("logout from %s failed: %s", self.config.address, type(exc).__name__)
            _shutdown(client)

    def _require(self) -> _Client:
        if self._client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        return self._client

    def _run(self, name: str, *args: str) -> list[bytes | tuple[bytes, bytes] | None]:
        """Run one command; a NO/BAD reply raises, a dropped connection marks us closed."""
        client = self._require()
        try:
            with mapped_errors(self._where, "imap"):
                typ, data = client._simple_command(name, *args)
                if typ != "OK":
                    raise client.error(data[-1] if data else f"{name} failed")
                return list(client._untagged_response(typ, data, name)[1])
        except ConnectionLostError:
            self._client = None
            _shutdown(client)
            raise

    def noop(self) -> None:
        self._run("NOOP")

    def report(self) -> ServerReport:
        client = self._require()
        listing = self._run("LIST", quote(""), quote("*"))
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
