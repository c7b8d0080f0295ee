"""POP3 over implicit TLS or STLS, on the stdlib's ``poplib``.

POP3 has one folder (the maildrop) and no flags. Deletions are committed by the
server only on a clean QUIT; postroom never sends QUIT after an error it cannot
account for.
"""

from __future__ import annotations

import contextlib
import poplib
import socket
import ssl

from postroom.auth.base import PasswordLogin
from postroom.config import EmailServer
from postroom.errors import ConnectionLostError, StartTLSError
from postroom.logs import get_logger
from postroom.transports.base import ServerReport
from postroom.transports.errors import StageTracker, mapped_errors, server_text, tracker_for
from postroom.transports.sockets import open_socket
from postroom.transports.tls import client_context, describe_tls

__all__ = ["Pop3Mailbox"]

_log = get_logger("postroom.pop3")


class _Client(poplib.POP3):
    """``poplib.POP3`` whose socket comes from :func:`open_socket`."""

    def __init__(self, where: StageTracker, implicit_tls: ssl.SSLContext | None) -> None:
        self._where = where
        self._implicit_tls = implicit_tls
        super().__init__(where.host, where.port, timeout=where.connect_timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return open_socket(self._where, self._implicit_tls)


class Pop3Mailbox:
    """A POP3 connection for one session."""

    protocol = "pop3"

    def __init__(self, config: EmailServer, login: PasswordLogin) -> None:
        self.config = config
        self._login = login
        self._client: _Client | None = None
        self._where = tracker_for(config)

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
                client.user(self._login.username.reveal())
                client.pass_(self._login.password.reveal())
                where.stage = "command"
            except BaseException:
                _drop(client)
                raise
        self._client = client
        _log.debug("connected to %s", config.address)

    def close(self) -> None:
        """QUIT (which commits deletions) and close."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.quit()
            except Exception as exc:
                _log.debug("QUIT to %s failed: %s", self.config.address, type(exc).__name__)
                _drop(client)

    def _require(self) -> _Client:
        if self._client is None:
            raise ConnectionLostError("the connection is closed", server=self.config.address)
        return self._client

    def noop(self) -> None:
        client = self._require()
        try:
            with mapped_errors(self._where, "pop3"):
                client.noop()
        except ConnectionLostError:
            self._client = None
            _drop(client)
            raise

    def report(self) -> ServerReport:
        client = self._require()
        with mapped_errors(self._where, "pop3"):
            count, _size = client.stat()
            capabilities = _capa(client)
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


def _capa(client: poplib.POP3) -> dict[str, list[str]]:
    try:
        return client.capa()
    except poplib.error_proto:  # CAPA is optional (RFC 2449)
        return {}


def _drop(client: poplib.POP3) -> None:
    """Close without QUIT, so the server rolls back deletions."""
    with contextlib.suppress(OSError):
        client.close()
