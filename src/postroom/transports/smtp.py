"""SMTP submission over implicit TLS or STARTTLS, on the stdlib's ``smtplib``."""

from __future__ import annotations

import contextlib
import contextvars
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

from postroom.auth.base import Login, TokenLogin
from postroom.config.smtp_server import SmtpServer
from postroom.errors import (
    AuthenticationError,
    ConnectionLostError,
    DeliveryUnknownError,
    ProtocolError,
    RecipientsRefusedError,
    StartTLSError,
)
from postroom.logs import get_logger
from postroom.transports.errors import StageTracker, mapped_errors, server_text, tracker_for
from postroom.transports.sasl import OAuthExchange, choose_mechanism, oauth_login
from postroom.transports.sockets import open_socket
from postroom.transports.tls import client_context, describe_tls

if TYPE_CHECKING:  # collections.abc.Buffer from Python 3.12
    from typing_extensions import Buffer

__all__ = [
    "SendReceipt",
    "SmtpCheck",
    "SmtpSender",
    "after_acceptance",
    "before_handover",
    "check_submission",
    "send_message",
]

_log = get_logger("postroom.smtp")


@dataclass(frozen=True)
class SendReceipt:
    """What the server accepted: the envelope, and recipients it refused (if only some were)."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]
    refused: dict[str, str]
    server: str


#: Called just before a message's content goes to the server (SMTP DATA; EWS and Graph: the submitting
#: request): until then nothing can have been delivered, from then on delivery is uncertain until the server
#: confirms. A bot's outbox records that moment, so that after a crash it knows whether to look before resending.
before_handover: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "postroom_before_handover", default=None
)
#: Called as soon as the server has confirmed it took the message (SMTP 250 after DATA; the submitting request's
#: success), before anything else happens (such as the copy in Sent): the outbox's "it went out".
after_acceptance: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "postroom_after_acceptance", default=None
)


class _Client(smtplib.SMTP):
    def __init__(self, where: StageTracker, implicit_tls: ssl.SSLContext | None) -> None:
        self._where = where
        self._implicit_tls = implicit_tls
        # smtplib would ask DNS for our FQDN (socket.getfqdn), which can stall for seconds
        super().__init__(timeout=where.connect_timeout, local_hostname=_ehlo_name())

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return open_socket(self._where, self._implicit_tls)

    #: Whether the message's last line (``<CRLF>.<CRLF>``) went out: from then on a lost reply leaves
    #: delivery unknown (RFC 5321 §4.1.1.4: the server may have taken the message).
    handed_over = False

    def send(self, s: Buffer | str) -> None:
        last = isinstance(s, bytes) and s.endswith(b"\r\n.\r\n")
        if last:
            hook = before_handover.get()
            if hook is not None:
                hook()
        super().send(s)
        if last:
            self.handed_over = True


def _authenticate(client: smtplib.SMTP, login: Login, server: SmtpServer) -> None:
    """One AUTH attempt with the best mechanism offered (smtplib's login() tries them all)."""
    if not client.has_extn("auth"):
        raise AuthenticationError(
            "the server offers no AUTH on this connection",
            hint="use security='starttls' or 'ssl' (many servers offer AUTH only over TLS), or auth=None for a relay",
        )
    offered = client.esmtp_features["auth"].upper().split()
    if isinstance(login, TokenLogin):
        _authenticate_oauth(client, login, server, offered)
        return
    client.user, client.password = login.username.reveal(), login.password.reveal()
    if "PLAIN" in offered:
        client.auth("PLAIN", client.auth_plain)
    elif "LOGIN" in offered:
        client.auth("LOGIN", client.auth_login, initial_response_ok=False)
    else:
        raise AuthenticationError(
            f"the server offers no password mechanism postroom uses (offered: {' '.join(offered)})",
            hint="PLAIN or LOGIN over TLS is needed for Basic auth",
        )


def _authenticate_oauth(client: smtplib.SMTP, login: TokenLogin, server: SmtpServer, offered: list[str]) -> None:
    """XOAUTH2/OAUTHBEARER with the credentials on the line after ``334`` (no initial response: tokens are long)."""
    mechanism = choose_mechanism(offered, "smtp")

    def attempt(exchange: OAuthExchange) -> None:
        def answer(challenge: bytes | None = None) -> str:
            return exchange.respond(challenge or b"").decode()

        try:
            client.auth(mechanism, answer, initial_response_ok=False)
        except smtplib.SMTPAuthenticationError as refused:
            raise exchange.failure(server_text(f"{refused.smtp_code} {server_text(refused.smtp_error)}")) from None

    assert server.host is not None and server.port is not None
    oauth_login(login, mechanism, attempt, host=server.host, port=server.port)


def _ehlo_name() -> str:
    name = socket.gethostname()
    return name if name and all(ch.isalnum() or ch in ".-" for ch in name) else "localhost"


@contextlib.contextmanager
def _logged_in(server: SmtpServer, login: Login | None) -> Iterator[_Client]:
    """A connection to ``server``: TLS (implicit or STARTTLS, never a plaintext fallback), EHLO, AUTH;
    QUIT when the block ends. Errors come mapped."""
    assert server.port is not None
    where = tracker_for(server)
    context = client_context(verify=server.verify_certificate, ca_file=server.ca_file)
    with mapped_errors(where, "smtp"):
        client = _Client(where, context if server.security == "ssl" else None)
        client._host = server.host  # type: ignore[attr-defined]  # the name STARTTLS verifies against
        try:
            client.connect(server.host, server.port)
            client.ehlo()
            if server.security == "starttls":
                where.stage = "starttls"
                if not client.has_extn("starttls"):
                    raise StartTLSError(
                        "the server does not offer STARTTLS",
                        hint="postroom never falls back to plaintext: use security='ssl' (usually port 465)",
                    )
                client.starttls(context=context)
                client.ehlo()
            if login is not None:
                where.stage = "login"
                _authenticate(client, login, server)
            where.stage = "command"
            yield client
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()


@dataclass(frozen=True)
class SmtpCheck:
    """What a login to the SMTP server found (for *Test connection*)."""

    address: str
    tls_version: str | None
    cipher: str | None
    #: The largest message the server takes (SIZE), in bytes; None when it did not say.
    max_size: int | None
    extensions: tuple[str, ...]


def check_submission(server: SmtpServer, login: Login | None) -> SmtpCheck:
    """Connect, start TLS and log in to the SMTP server, as sending would, and send nothing."""
    with _logged_in(server, login) as client:
        tls_version, cipher = describe_tls(client.sock)
        size = client.esmtp_features.get("size", "").strip()
        return SmtpCheck(
            address=server.address,
            tls_version=tls_version,
            cipher=cipher,
            max_size=int(size) if size.isdigit() and int(size) > 0 else None,
            extensions=tuple(sorted(name.upper() for name in client.esmtp_features)),
        )


class SmtpSender:
    """One SMTP connection that sends several messages: opened (TLS, EHLO, AUTH) at the first, reused for
    the next ones, and opened again when the server closed it between two messages (idle timeout, a limit
    of messages per connection), which is safe: nothing of the next message had gone out. QUIT on close."""

    def __init__(self, server: SmtpServer, login: Login | None) -> None:
        self.server = server
        self.login = login
        self._stack: contextlib.ExitStack | None = None
        self._client: _Client | None = None

    def __enter__(self) -> SmtpSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception):
                stack.close()

    def _connected(self) -> _Client:
        if self._client is None:
            stack = contextlib.ExitStack()
            self._client = stack.enter_context(_logged_in(self.server, self.login))
            self._stack = stack
        return self._client

    def send(self, message: EmailMessage, sender: str, recipients: list[str]) -> SendReceipt:
        """Send ``message`` to ``recipients`` (the envelope; Bcc included). Fails if every recipient is refused."""
        for attempt in (1, 2):
            reused = self._client is not None
            client = self._connected()
            client.handed_over = False
            try:
                with mapped_errors(client._where, "smtp"):
                    refused = _transaction(client, message, sender, recipients)
            except _ClosedBeforeSendingError:
                self.close()
                if attempt == 2 or not reused:
                    raise ConnectionLostError(
                        "the SMTP server closed the connection before the message went out; nothing was sent",
                        hint="send it again",
                    ) from None
                _log.info("the SMTP server closed the connection between messages; connecting again")
                continue
            except BaseException:
                self.close()  # a connection in an unknown state is not reused
                raise
            accepted = after_acceptance.get()
            if accepted is not None:
                accepted()
            refused_text = {rcpt: server_text(reply[1]) for rcpt, reply in refused.items()}
            if refused_text:
                _log.warning("some recipients were refused: %s", refused_text)
            return SendReceipt(
                message_id=str(message.get("Message-ID", "")),
                sender=sender,
                recipients=tuple(r for r in recipients if r not in refused_text),
                refused=refused_text,
                server=self.server.address,
            )
        raise AssertionError("unreachable")


class _ClosedBeforeSendingError(Exception):
    """The server had closed the connection before anything of this message went out."""


def _transaction(
    client: _Client, message: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """MAIL, RCPT, DATA for one message on a logged-in connection; smtplib's errors as postroom's."""
    try:
        return client.send_message(message, from_addr=sender, to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        detail = "; ".join(f"{rcpt}: {server_text(reply[1])}" for rcpt, reply in exc.recipients.items())
        raise RecipientsRefusedError(
            f"every recipient was refused ({detail}); nothing was sent", hint="check the addresses"
        ) from None
    except smtplib.SMTPSenderRefused as exc:
        if exc.smtp_code == 421:  # "service not available, closing channel": before anything went out
            raise _ClosedBeforeSendingError from None
        raise ProtocolError(
            f"the sender {sender!r} was refused: {server_text(exc.smtp_error)}",
            hint="send from the mailbox's own address, or ask for send-as rights",
        ) from None
    except smtplib.SMTPDataError as exc:
        raise ProtocolError(f"the message was refused: {server_text(exc.smtp_error)}") from None
    except (smtplib.SMTPServerDisconnected, OSError) as exc:  # OSError: resets and timeouts
        if not client.handed_over:
            if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionResetError | BrokenPipeError):
                raise _ClosedBeforeSendingError from None
            raise  # nothing was handed over: not delivered, safe to send again
        raise DeliveryUnknownError(
            f"the connection dropped after {message.get('Message-ID', 'the message')} was handed to the "
            f"server, before it confirmed ({type(exc).__name__}): it may have been delivered",
            hint="do not send it again blindly: look for that Message-ID with the recipients or in the "
            "server's log first",
        ) from exc


def send_message(
    server: SmtpServer, login: Login | None, message: EmailMessage, sender: str, recipients: list[str]
) -> SendReceipt:
    """Send one message on a connection of its own (see :class:`SmtpSender` for several)."""
    with SmtpSender(server, login) as sender_connection:
        return sender_connection.send(message, sender, recipients)
