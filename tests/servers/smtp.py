"""A real SMTP submission server for the tests: aiosmtpd with STARTTLS (or implicit TLS) and AUTH,
delivering what it accepts into Dovecot over LMTP, so a sent message can be read back with IMAP."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers.dovecot import SHARED_PASSWORD, Dovecot, free_port

__all__ = ["SmtpServerUnderTest", "smtp_server"]


@dataclass
class SmtpServerUnderTest:
    host: str
    starttls_port: int
    ssl_port: int
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)


class _LmtpRelay:
    def __init__(self, dovecot: Dovecot, record: SmtpServerUnderTest) -> None:
        self.dovecot = dovecot
        self.record = record

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        data: bytes = envelope.original_content
        self.record.received.append((envelope.mail_from, list(envelope.rcpt_tos), data))
        await asyncio.get_running_loop().run_in_executor(
            None, self._deliver, envelope.mail_from, envelope.rcpt_tos, data
        )
        return "250 2.0.0 delivered"

    def _deliver(self, sender: str, recipients: list[str], data: bytes) -> None:
        for recipient in recipients:  # smtplib.LMTP cannot read LMTP's per-recipient replies to one DATA
            with smtplib.LMTP("127.0.0.1", self.dovecot.ports["lmtp"]) as lmtp:
                lmtp.sendmail(sender, [recipient], data)


def _authenticator(dovecot: Dovecot) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode()
        expected = dovecot.users.get(user, SHARED_PASSWORD)
        return AuthResult(success=auth_data.password.decode() == expected, handled=False)

    return check


@contextmanager
def smtp_server(dovecot: Dovecot) -> Iterator[SmtpServerUnderTest]:
    """Two listeners: submission with STARTTLS required (like 587) and implicit TLS (like 465); both need AUTH."""
    assert dovecot.certs is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(dovecot.certs.cert_file, dovecot.certs.key_file)
    record = SmtpServerUnderTest("localhost", free_port(), free_port())
    handler = _LmtpRelay(dovecot, record)
    common = {
        "hostname": "127.0.0.1",
        "server_hostname": "localhost",
        "authenticator": _authenticator(dovecot),
        "auth_required": True,
    }
    starttls = Controller(
        handler, port=record.starttls_port, tls_context=context, require_starttls=True, auth_require_tls=True, **common
    )
    implicit = Controller(handler, port=record.ssl_port, ssl_context=context, auth_require_tls=False, **common)
    starttls.start()
    implicit.start()  # implicit TLS: encrypted before AUTH, though aiosmtpd cannot tell and warns
    try:
        yield record
    finally:
        starttls.stop()
        implicit.stop()
