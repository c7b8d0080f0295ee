"""Through a proxy that cuts the connection: before and after the server acts, and every few hundred KB.

What the server really did is always checked on a separate, uncut connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

import postroom
from postroom import ConnectionLostError, DeliveryUnknownError, SmtpServer, Variable
from tests.conftest import PASSWORD
from tests.servers.cutting_proxy import CutRule, CuttingProxy, cutting_proxy
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpServerUnderTest


@contextmanager
def proxy_to(dovecot: Dovecot, port: int, **options: object) -> Iterator[CuttingProxy]:
    assert dovecot.certs is not None
    certs = dovecot.certs
    with cutting_proxy(port, certs.cert_file, certs.key_file, certs.ca_file, **options) as proxy:  # type: ignore[arg-type]
        yield proxy


def smtp_through(dovecot: Dovecot, proxy: CuttingProxy) -> SmtpServer:
    assert dovecot.certs is not None
    return SmtpServer(
        host="localhost",
        port=proxy.port,
        security="ssl",
        ca_file=dovecot.certs.ca_file,
        auth=postroom.Basic(username=Variable("U"), password=Variable("P")),
        read_timeout=5,
    )


def delivered(smtp: SmtpServerUnderTest, subject: str) -> int:
    return sum(1 for _sender, _rcpts, data in smtp.received if f"Subject: {subject}".encode() in data)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_cut_around_data_says_whether_the_mail_may_have_gone(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, when: str
) -> None:
    """``before``: cut when the client says DATA, before the server hears it. ``after``: the server got the
    final dot and accepted the mail, and its 250 never arrived."""
    subject = f"cut {when} the message was handed over"
    rule = CutRule(rb"^(?i:data)\r\n", "before") if when == "before" else CutRule(rb"\r\n\.\r\n", "after")
    with proxy_to(dovecot, smtp.ssl_port, rules=[rule]) as proxy, pytest.raises(postroom.MailServerError) as raised:
        postroom.send(
            smtp_through(dovecot, proxy),
            sender=mailbox_user,
            to=f"rcpt-{mailbox_user}",
            subject=subject,
            body="x",
            variables={"U": mailbox_user, "P": PASSWORD},
        )
    assert proxy.cuts == 1
    if when == "after":  # the server took it: the error says it may have gone, and has its own exit code
        assert isinstance(raised.value, DeliveryUnknownError)
        assert raised.value.exit_code == 9
        assert "may have been delivered" in str(raised.value)
        assert delivered(smtp, subject) == 1
    else:  # cut before the message went: not delivered, and safe to send again
        assert isinstance(raised.value, ConnectionLostError)
        assert not isinstance(raised.value, DeliveryUnknownError)
        assert delivered(smtp, subject) == 0
