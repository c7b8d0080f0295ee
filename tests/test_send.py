"""Send, reply, reply-all, forward through a real SMTP server; every message read back from Dovecot."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import pytest

import postroom
from postroom import AuthenticationError, Basic, ConfigError, Session, SmtpServer, Variable
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import PDF, simple
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpServerUnderTest


def session_for(dovecot: Dovecot, smtp: SmtpServerUnderTest, user: str, name: str = "s", **changes: Any) -> Session:
    config = server_config(
        dovecot, smtp_host="localhost", smtp_port=smtp.starttls_port, smtp_security="starttls", **changes
    )
    return postroom.connect(name, config, variables={"MAILBOX_USER": user, "MAILBOX_PASSWORD": PASSWORD})


def inbox_of(dovecot: Dovecot, user: str, name: str = "reader") -> list[postroom.Message]:
    reader = postroom.connect(
        name, server_config(dovecot), variables={"MAILBOX_USER": user, "MAILBOX_PASSWORD": PASSWORD}, replace=True
    )
    return list(postroom.messages(reader, order="oldest"))


@pytest.fixture
def recipient(dovecot: Dovecot, mailbox_user: str) -> str:
    user = "rcpt-" + mailbox_user
    dovecot.add_user(user)
    return user


def test_send_round_trip_with_attachments(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str, tmp_path: Path
) -> None:
    report = tmp_path / "Bericht März.pdf"
    report.write_bytes(PDF)
    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 100)
    session = session_for(dovecot, smtp, mailbox_user)
    receipt = postroom.send(
        session,
        to=f"Recipient <{recipient}>; nobody-else@example.test",
        bcc=[f"bcc-{recipient}"],
        subject="Monatsbericht für März",
        body="Anbei.\n",
        attachments=[report, data],
        importance="high",
    )
    assert receipt.sender == mailbox_user
    assert f"bcc-{recipient}" in receipt.recipients
    arrived = inbox_of(dovecot, recipient)
    assert [m.subject for m in arrived] == ["Monatsbericht für März"]
    message = arrived[0]
    assert message.attachment_names == ["Bericht März.pdf", "data.bin"]
    saved = message.save_attachments(tmp_path / "in")
    assert (tmp_path / "in" / "Bericht März.pdf").read_bytes() == PDF
    assert saved[1].path.read_bytes() == data.read_bytes()
    assert message.text == "Anbei.\n"
    assert message.headers["Importance"] == ["high"]
    assert "Bcc" not in message.headers
    assert message.message_id == receipt.message_id


def test_send_over_implicit_tls_without_a_session(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    assert dovecot.certs is not None
    server = SmtpServer(
        host="localhost",
        port=smtp.ssl_port,
        security="ssl",
        ca_file=dovecot.certs.ca_file,
        auth=Basic(username=Variable("U"), password=Variable("P")),
    )
    postroom.send(server, to=recipient, subject="via 465", body="x", variables={"U": mailbox_user, "P": PASSWORD})
    assert [m.subject for m in inbox_of(dovecot, recipient)] == ["via 465"]


def test_html_body_gets_a_text_alternative(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    session = session_for(dovecot, smtp, mailbox_user)
    postroom.send(session, to=recipient, subject="html", body="<p>Hello <b>you</b></p>", html=True)
    message = inbox_of(dovecot, recipient)[0]
    assert message.html == "<p>Hello <b>you</b></p>\n"
    assert message.text.strip() == "Hello you"


def test_bad_input_fails_before_anything_is_sent(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    session = session_for(dovecot, smtp, mailbox_user)
    before = len(smtp.received)
    with pytest.raises(ConfigError, match=r"attachments: not found: .*missing\.pdf — nothing was sent"):
        postroom.send(session, to="a@example.test", subject="x", attachments=[tmp_path / "missing.pdf"])
    with pytest.raises(ConfigError, match=r"cc: 'not-an-address' is not an email address"):
        postroom.send(session, to="a@example.test", cc="not-an-address", subject="x")
    with pytest.raises(ConfigError, match="to: no recipient"):
        postroom.send(session, subject="x")
    with pytest.raises(ConfigError, match="subject: contains a line break"):
        postroom.send(session, to="a@example.test", subject="x\r\nBcc: victim@example.test")
    assert len(smtp.received) == before


def test_wrong_smtp_password(dovecot: Dovecot, smtp: SmtpServerUnderTest) -> None:
    config = server_config(dovecot, smtp_host="localhost", smtp_port=smtp.starttls_port, smtp_security="starttls")
    session = postroom.connect(
        "s", config, variables={"MAILBOX_USER": "bot@example.test", "MAILBOX_PASSWORD": PASSWORD}
    )
    # the IMAP login worked; now the same user on SMTP with a wrong password
    bad = postroom.SmtpServer(
        host="localhost",
        port=smtp.starttls_port,
        ca_file=session.config.ca_file,  # type: ignore[attr-defined]
        auth=Basic(username=Variable("U"), password=Variable("P")),
    )
    with pytest.raises(AuthenticationError, match="login refused") as caught:
        postroom.send(bad, to="a@example.test", subject="x", variables={"U": "bot@example.test", "P": "wrong-canary"})
    assert "wrong-canary" not in str(caught.value)


def test_reply_and_reply_all(dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str) -> None:
    colleague = "colleague-" + recipient
    dovecot.add_user(colleague)
    original = simple("Re: RE: Invoice 1001", sender=f"Customer <{recipient}>", body="Is it paid?\nThanks\n")
    original = original.replace(b"To: Bot <bot@example.test>", f"To: Me <{mailbox_user}>\r\nCc: {colleague}".encode())
    dovecot.deliver(mailbox_user, original)
    session = session_for(dovecot, smtp, mailbox_user)
    message = next(postroom.messages(session))
    postroom.reply(session, message, "Yes, paid.")
    answer = inbox_of(dovecot, recipient)[-1]
    assert answer.subject == "Re: Invoice 1001"
    assert answer.in_reply_to == message.message_id
    assert answer.references[-1] == message.message_id
    assert answer.text.startswith("Yes, paid.\n\nOn ")
    assert "> Is it paid?\n> Thanks" in answer.text
    assert [a.address for a in answer.to] == [recipient]
    assert answer.cc == []
    postroom.reply(session, message, "Adding everyone.", reply_all=True)
    everyone = inbox_of(dovecot, recipient)[-1]
    assert [a.address for a in everyone.to] == [recipient]
    assert [a.address for a in everyone.cc] == [colleague]  # and not ourselves
    assert [m.subject for m in inbox_of(dovecot, colleague, "colleague")] == ["Re: Invoice 1001"]


def test_forward_inline_and_as_attachment(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    dovecot.deliver(mailbox_user, simple("Invoice 7", body="See PDF.\n", attachments={"invoice-7.pdf": PDF}))
    session = session_for(dovecot, smtp, mailbox_user)
    message = next(postroom.messages(session))
    postroom.forward(session, message, recipient, "FYI")
    postroom.forward(session, message, recipient, "As file", as_attachment=True)
    inline, attached = inbox_of(dovecot, recipient)
    assert inline.subject == attached.subject == "Fwd: Invoice 7"
    assert inline.text.startswith("FYI\n\n---------- Forwarded message ----------")
    assert "See PDF." in inline.text
    assert inline.attachment_names == ["invoice-7.pdf"]
    assert inline.part_content(inline.attachments()[0]) == PDF
    assert attached.attachment_names == ["Invoice 7.eml"]
    inner = email.message_from_bytes(attached.part_content(attached.attachments()[0]), policy=email.policy.default)
    assert inner["subject"] == "Invoice 7"


def test_save_to_sent(dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str) -> None:
    dovecot.deliver(mailbox_user, simple("seed"), folder="Sent")
    session = session_for(dovecot, smtp, mailbox_user)
    postroom.send(session, to=recipient, subject="keep a copy", body="x", save_to_sent=True)
    copies = [m for m in postroom.messages(session, folder="Sent") if m.subject == "keep a copy"]
    assert len(copies) == 1 and copies[0].seen is True


def test_a_retried_sent_copy_is_stored_once(dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str) -> None:
    """APPEND is not idempotent: the session's retry after a dropped connection checks the Message-ID first."""
    from postroom.actions.send import append_once

    dovecot.deliver(mailbox_user, simple("seed"), folder="Sent")
    session = session_for(dovecot, smtp, mailbox_user)
    raw = b"Message-ID: <copy-1@example.test>\r\nSubject: the copy\r\nFrom: a@example.test\r\n\r\nx\r\n"
    store = append_once("Sent", raw, "<copy-1@example.test>")
    session.call(store)  # stored; then the connection drops before the reply is read ...
    dovecot.kick(mailbox_user)
    session.call(store)  # ... and the session runs the operation again on a new connection
    subjects = [m.subject for m in postroom.messages(session, folder="Sent")]
    assert subjects.count("the copy") == 1
    # a copy the server did not keep (here: removed after the first attempt) is stored by the retry
    other = b"Message-ID: <copy-2@example.test>\r\nSubject: another\r\nFrom: a@example.test\r\n\r\nx\r\n"
    second_store = append_once("Sent", other, "<copy-2@example.test>")
    session.call(second_store)
    lost = [m for m in postroom.messages(session, folder="Sent") if m.subject == "another"]
    postroom.delete(session, lost)
    session.call(second_store)
    assert [m.subject for m in postroom.messages(session, folder="Sent")].count("another") == 1


def test_session_without_smtp_settings_says_what_to_add(dovecot: Dovecot, mailbox_user: str) -> None:
    session = postroom.connect(
        "n", server_config(dovecot), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    )
    with pytest.raises(ConfigError, match="smtp_host: no SMTP server is known"):
        postroom.send(session, to="a@example.test", subject="x")


def test_replies_to_many_carry_on_past_a_failure_and_say_what_was_sent(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    """One sender among five has no mailbox (the relay refuses it): the other four are answered, each
    result says whether mail went out, and the failed one carries the error."""
    senders = [recipient, recipient, f"nobody-{recipient}", recipient, recipient]
    for number, sender in enumerate(senders):
        dovecot.deliver(mailbox_user, simple(f"Question {number}", sender=f"Customer <{sender}>"))
    session = session_for(dovecot, smtp, mailbox_user)
    smtp.refused.add(senders[2])
    try:
        results = postroom.reply(session, postroom.messages(session, order="oldest"), "Answered.")
    finally:
        smtp.refused.discard(senders[2])
    assert [r.status for r in results] == ["done", "done", "failed", "done", "done"]
    assert [r.sent for r in results] == [True, True, False, True, True]
    assert isinstance(results[2].error, postroom.PostroomError) and results[2].receipt is None
    assert sorted(m.subject for m in inbox_of(dovecot, recipient)) == [f"Re: Question {n}" for n in (0, 1, 3, 4)]
    # the single-message form still returns the receipt, or raises
    assert results[0].key is not None
    single = postroom.reply(session, postroom.get_message(session, results[0].key), "Once more.")
    assert single.recipients == (recipient,)


def test_send_each_carries_on_past_a_bad_message_and_a_typo_sends_nothing(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    session = session_for(dovecot, smtp, mailbox_user)
    with pytest.raises(postroom.ConfigError, match=r"messages\[1\]\.subjekt: is not an argument of send\(\)"):
        postroom.send_each(session, [{"to": recipient, "subject": "a"}, {"to": recipient, "subjekt": "b"}])
    assert inbox_of(dovecot, recipient) == []
    results = postroom.send_each(
        session,
        [
            {"to": recipient, "subject": "first"},
            {"to": "not an address", "subject": "second"},
            {"to": recipient, "subject": "third", "attachments": ["/nonexistent/file.pdf"]},
            {"to": recipient, "subject": "fourth"},
        ],
    )
    assert [r.status for r in results] == ["done", "failed", "failed", "done"]
    assert [r.sent for r in results] == [True, False, False, True]
    assert all(r.error is not None for r in results[1:3])
    assert sorted(m.subject for m in inbox_of(dovecot, recipient)) == ["first", "fourth"]


def test_a_bulk_send_or_reply_uses_one_connection_and_one_login(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    session = session_for(dovecot, smtp, mailbox_user)
    before = (smtp.connections, smtp.logins)
    results = postroom.send_each(session, [{"to": recipient, "subject": f"bulk {n}", "body": "x"} for n in range(6)])
    assert [r.status for r in results] == ["done"] * 6
    assert (smtp.connections - before[0], smtp.logins - before[1]) == (1, 1)
    for number in range(3):
        dovecot.deliver(mailbox_user, simple(f"question {number}", sender=f"Asker <{recipient}>"))
    before = (smtp.connections, smtp.logins)
    answered = postroom.reply(session, list(postroom.messages(session, subject="question")), "answer")
    assert [r.status for r in answered] == ["done"] * 3
    assert (smtp.connections - before[0], smtp.logins - before[1]) == (1, 1)
    before = (smtp.connections, smtp.logins)
    postroom.send(session, to=recipient, subject="alone", body="x")  # a single send: a connection of its own
    assert smtp.connections - before[0] == 1
    bulk = sorted(m.subject for m in inbox_of(dovecot, recipient) if m.subject.startswith("bulk"))
    assert bulk == [f"bulk {n}" for n in range(6)]  # each once


def test_a_server_that_closes_between_messages_gets_each_message_once(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, recipient: str
) -> None:
    session = session_for(dovecot, smtp, mailbox_user)
    smtp.close_after = 2  # "421 too many messages" servers: a new connection every two messages
    try:
        before = smtp.connections
        results = postroom.send_each(session, [{"to": recipient, "subject": f"n{n}", "body": "x"} for n in range(5)])
    finally:
        smtp.close_after = 0
    assert [r.status for r in results] == ["done"] * 5
    assert smtp.connections - before == 3
    assert sorted(m.subject for m in inbox_of(dovecot, recipient)) == [f"n{n}" for n in range(5)]  # once each
