"""POP3 as servers really speak it: lines of any length, and the response codes of RFC 2449 and 3206."""

from __future__ import annotations

import pytest

import postroom
from postroom import AuthenticationError, EmailServer, Insecure, MailServerError, ServerBusyError
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import simple
from tests.servers.dovecot import Dovecot
from tests.servers.scripted import scripted_server


def test_a_100_kb_line_and_the_messages_after_it(dovecot: Dovecot, mailbox_user: str) -> None:
    """poplib stops at 2,048 bytes and then read the rest of that reply as the answer to later commands."""
    long_line = "x" * 100_000
    dovecot.deliver(mailbox_user, simple("before"))
    dovecot.deliver(mailbox_user, simple("long", body=f"{long_line}\nend\n"))
    for number in range(3):
        dovecot.deliver(mailbox_user, simple(f"after {number}"))
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    pop3 = postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)
    read = {message.subject: message.text for message in postroom.messages(pop3, order="oldest")}
    assert list(read) == ["before", "long", "after 0", "after 1", "after 2"]
    assert read["long"] == f"{long_line}\nend\n"
    assert read["after 2"] == "Hello.\n"


def _scripted(port: int) -> EmailServer:
    return EmailServer(
        protocol="pop3",
        host="127.0.0.1",
        port=port,
        security="none",
        auth=postroom.Basic(username="bot", password=Insecure("pw")),
        connect_timeout=3,
        read_timeout=3,
    )


def _refused_with(reply: bytes, capabilities: bytes = b"USER\r\n") -> MailServerError:
    script = {b"CAPA": b"+OK\r\n" + capabilities + b".\r\n", b"USER": b"+OK\r\n", b"PASS": reply, b"QUIT": b"+OK\r\n"}
    with (
        scripted_server(b"+OK ready\r\n", script) as port,
        pytest.raises(MailServerError) as raised,
        pytest.warns(postroom.PostroomWarning),  # the insecure password in the test
    ):
        postroom.test_connection(_scripted(port))
    return raised.value


def test_login_delay_says_when_to_try_again() -> None:
    error = _refused_with(
        b"-ERR [LOGIN-DELAY] Logins must be at least 1 minute apart\r\n", b"USER\r\nLOGIN-DELAY 60\r\n"
    )
    assert isinstance(error, ServerBusyError)
    assert not isinstance(error, AuthenticationError)  # not a wrong password: exit 6, not 7
    assert error.retry_after == 60
    assert "wait 60 s" in str(error)
    assert "username and password" not in str(error)


@pytest.mark.parametrize(
    ("code", "kind", "says"),
    [
        ("IN-USE", ServerBusyError, "in use by another POP3 session"),
        ("SYS/TEMP", ServerBusyError, "temporary problem"),
        ("SYS/PERM", MailServerError, "retrying will not help"),
        ("AUTH", AuthenticationError, "no password on an unencrypted connection"),
    ],
)
def test_each_response_code_has_its_own_message(code: str, kind: type[MailServerError], says: str) -> None:
    error = _refused_with(f"-ERR [{code}] no\r\n".encode())
    assert type(error) is kind
    assert says in str(error)


def test_retr_undoes_dot_stuffing_and_keeps_the_message_byte_for_byte(dovecot: Dovecot, mailbox_user: str) -> None:
    raw = (
        b"From: Dot <dot@example.test>\r\nTo: bot@example.test\r\nSubject: dots\r\n"
        b"Message-ID: <dots@example.test>\r\n\r\n.\r\n..\r\n.leading\r\nmiddle . dot\r\n.\r\nlast\r\n"
    )
    dovecot.deliver(mailbox_user, raw)  # before the login: a POP3 session sees the maildrop as it was then
    names = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    with postroom.connect("dots", server_config(dovecot, "pop3"), variables=names) as pop3:
        message = next(iter(postroom.messages(pop3)))
        assert message.raw() == raw  # the server stuffed each line starting with '.', postroom unstuffed them
        assert message.text.splitlines() == [".", "..", ".leading", "middle . dot", ".", "last"]
