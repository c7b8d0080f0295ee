"""A real SMTP submission server for the tests: aiosmtpd with STARTTLS (or implicit TLS) and AUTH,
delivering what it accepts into Dovecot over LMTP, so a sent message can be read back with IMAP."""

from __future__ import annotations

import asyncio
import base64
import json
import smtplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

from tests.servers.dovecot import SHARED_PASSWORD, Dovecot, free_port

__all__ = ["SmtpServerUnderTest", "smtp_server"]


@dataclass
class SmtpServerUnderTest:
    host: str
    starttls_port: int
    ssl_port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    #: Recipients the server refuses at RCPT TO (550 5.1.1), as a real server does an unknown user.
    refused: set[str] = field(default_factory=set)
    #: Connections accepted and password logins checked (the send bench counts them).
    connections: int = 0
    logins: int = 0
    #: Close each connection after this many messages, as servers with a per-connection limit do (0: never).
    close_after: int = 0
    #: File a copy of each message in the sender's Sent folder before answering 250, as Gmail's and
    #: Microsoft 365's SMTP servers do (a bot's outbox then finds what went out after a crash).
    sent_copy: bool = False


class _LmtpRelay:
    def __init__(
        self, dovecot: Dovecot, record: SmtpServerUnderTest, introspect: Callable[[str], dict[str, Any]] | None
    ) -> None:
        self.dovecot = dovecot
        self.record = record
        self.introspect = introspect

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd hook
        return await self._oauth(server, args, "XOAUTH2")

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802 - aiosmtpd hook
        return await self._oauth(server, args, "OAUTHBEARER")

    async def _oauth(self, server: SMTP, args: list[str], mechanism: str) -> AuthResult:
        """Validate the bearer token with the authorization server (RFC 7662), like Gmail's SMTP does with Google's."""
        if self.introspect is None:
            return AuthResult(success=False, handled=False)
        if len(args) > 1:
            response: Any = base64.b64decode(args[1])
        else:
            response = await server.challenge_auth(b"", encode_to_b64=False)
        if response is MISSING:
            return AuthResult(success=False, handled=False)
        user, token = _parse_oauth(mechanism, response)
        found = await asyncio.get_running_loop().run_in_executor(None, self.introspect, token)
        if found.get("active") and found.get("username") == user and found.get("mail"):
            return AuthResult(success=True, auth_data=user)
        status = "400" if found.get("active") and not found.get("mail") else "401"
        if mechanism == "OAUTHBEARER":
            status = "insufficient_scope" if status == "400" else "invalid_token"
        challenge = json.dumps({"status": status, "schemes": "bearer", "scope": "https://mail.google.com/"})
        await server.challenge_auth(challenge.encode())
        return AuthResult(success=False, handled=False, message="535 5.7.8 Username and Password not accepted")

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.record.refused:
            return f"550 5.1.1 <{address}>: recipient address rejected: user unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        data: bytes = envelope.original_content
        login = getattr(session, "auth_data", None)
        user = login.login.decode() if isinstance(login, LoginPassword) else str(login or "")
        # one job in a worker thread: a client that hangs up cannot cancel it halfway (between the delivery and
        # the copy in Sent), as a real server's acceptance is all or nothing
        await asyncio.get_running_loop().run_in_executor(
            None, self._deliver, envelope.mail_from, list(envelope.rcpt_tos), data, user
        )
        server.postroom_sent = getattr(server, "postroom_sent", 0) + 1
        return "250 2.0.0 delivered"

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        """A server with a limit of messages per connection answers the next MAIL with 421 and hangs up."""
        if self.record.close_after and getattr(server, "postroom_sent", 0) >= self.record.close_after:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 Too many messages in this connection, closing"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def _deliver(self, sender: str, recipients: list[str], data: bytes, user: str) -> None:
        if self.record.sent_copy and "@" in user:
            self.dovecot.deliver(user, data, folder="Sent", seen=True)
        for recipient in recipients:  # smtplib.LMTP cannot read LMTP's per-recipient replies to one DATA
            with smtplib.LMTP("127.0.0.1", self.dovecot.ports["lmtp"]) as lmtp:
                lmtp.sendmail(sender, [recipient], data)
        # counted once delivered (here, in the thread a hang-up cannot cancel): a delivery that failed, whose
        # client is told 5xx and may send again, is not mail the recipients got
        self.record.received.append((sender, recipients, data))


def _parse_oauth(mechanism: str, response: bytes) -> tuple[str, str]:
    """The user and the bearer token of an XOAUTH2 or OAUTHBEARER client response."""
    text = response.decode("utf-8", "replace")
    fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part and not part.startswith("n,"))
    user = fields.get("user", "")
    if mechanism == "OAUTHBEARER":
        gs2 = text.split("\x01", 1)[0]
        user = next((p[2:] for p in gs2.split(",") if p.startswith("a=")), "").replace("=2C", ",").replace("=3D", "=")
    token = fields.get("auth", "").removeprefix("Bearer ")
    return user, token


class _BigLineSMTP(SMTP):  # type: ignore[misc]
    """Room for real-size tokens: RFC 4954 allows AUTH lines of 12,288 octets; aiosmtpd's default is 512."""

    line_length_limit = 16384

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_size_limits["AUTH"] = 16384


class _Controller(Controller):  # type: ignore[misc]
    def factory(self) -> SMTP:
        self.handler.record.connections += 1  # aiosmtpd makes one SMTP protocol per connection
        return _BigLineSMTP(self.handler, **self.SMTP_kwargs)


def _authenticator(dovecot: Dovecot, record: SmtpServerUnderTest) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        record.logins += 1
        user = auth_data.login.decode()
        expected = dovecot.users.get(user, SHARED_PASSWORD)
        ok = auth_data.password.decode() == expected
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


@contextmanager
def smtp_server(
    dovecot: Dovecot, introspect: Callable[[str], dict[str, Any]] | None = None
) -> Iterator[SmtpServerUnderTest]:
    """Two listeners: submission with STARTTLS required (like 587) and implicit TLS (like 465); both need AUTH."""
    assert dovecot.certs is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(dovecot.certs.cert_file, dovecot.certs.key_file)
    record = SmtpServerUnderTest("localhost", free_port(), free_port())
    handler = _LmtpRelay(dovecot, record, introspect)
    common = {
        "hostname": "127.0.0.1",
        "server_hostname": "localhost",
        "authenticator": _authenticator(dovecot, record),
        "auth_required": True,
    }
    starttls = _Controller(
        handler, port=record.starttls_port, tls_context=context, require_starttls=True, auth_require_tls=True, **common
    )
    implicit = _Controller(handler, port=record.ssl_port, ssl_context=context, auth_require_tls=False, **common)
    starttls.start()
    implicit.start()  # implicit TLS: encrypted before AUTH, though aiosmtpd cannot tell and warns
    try:
        yield record
    finally:
        starttls.stop()
        implicit.stop()
