"""Through a proxy that cuts the connection: before and after the server acts, and every few hundred KB.

What the server really did is always checked on a separate, uncut connection.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pytest
from bench.mailbox import generate

import postroom
from postroom import ConnectionLostError, DeliveryUnknownError, SmtpServer, Variable
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import simple
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


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_bulk_send_on_one_connection_cut_mid_way_says_what_went_and_sends_nothing_twice(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, when: str
) -> None:
    """Bulk sends share one connection: a cut must still give each message its true result. ``before``: the
    first MAIL never reaches the server. ``after``: the server took the first message; its 250 never came.
    (A server that closes between two messages is in test_send: the message then goes once, on a new
    connection.)"""
    subjects = [f"bulk-{when} {n}" for n in range(4)]
    rule = CutRule(rb"^(?i:mail from):", "before") if when == "before" else CutRule(rb"\r\n\.\r\n", "after")
    with proxy_to(dovecot, smtp.ssl_port, rules=[rule]) as proxy:
        results = postroom.send_each(
            smtp_through(dovecot, proxy),
            [{"sender": mailbox_user, "to": f"rcpt-{mailbox_user}", "subject": s, "body": "x"} for s in subjects],
            variables={"U": mailbox_user, "P": PASSWORD},
        )
    assert proxy.cuts == 1 and proxy.connections == 2  # the rest went on one new connection
    assert [r.status for r in results] == ["failed", "done", "done", "done"]
    assert [r.sent for r in results] == [False, True, True, True]
    if when == "before":  # nothing went: safe to send again, and it says so
        assert isinstance(results[0].error, ConnectionLostError)
        assert not isinstance(results[0].error, DeliveryUnknownError)
        assert [delivered(smtp, s) for s in subjects] == [0, 1, 1, 1]
    else:  # it may have gone: said so, and never sent again
        assert isinstance(results[0].error, DeliveryUnknownError)
        assert [delivered(smtp, s) for s in subjects] == [1, 1, 1, 1]


def imap_through(dovecot: Dovecot, proxy: CuttingProxy, user: str, name: str = "cut") -> postroom.Session:
    variables = {"MAILBOX_USER": user, "MAILBOX_PASSWORD": PASSWORD}
    fast = postroom.ReconnectPolicy(attempts=5, backoff=0.05, max_backoff=0.2)
    return postroom.connect(name, server_config(dovecot, port=proxy.port), variables=variables, reconnect=fast)


def direct(dovecot: Dovecot, user: str) -> postroom.Session:
    """An uncut connection, to check what the server really holds."""
    variables = {"MAILBOX_USER": user, "MAILBOX_PASSWORD": PASSWORD}
    return postroom.connect("check", server_config(dovecot), variables=variables, replace=True)


def test_a_loop_through_a_connection_cut_every_few_hundred_kb_yields_each_message_once(
    dovecot: Dovecot, mailbox_user: str
) -> None:
    """The bench's mix (10% with a 50-300 KB attachment): bodies, bulk, and chunk replies larger than a cut."""
    count = 1500
    dovecot.deliver_many(mailbox_user, generate(count, seed=7))
    with proxy_to(dovecot, dovecot.ports["imaps"], every=(100_000, 400_000)) as proxy:
        session = imap_through(dovecot, proxy, mailbox_user)
        seen: list[str] = []
        for message in postroom.messages(session, order="oldest"):
            message.text  # noqa: B018 - reading the body is the point: bulk bodies come through the cuts too
            seen.append(str(message.key))
        reconnects = session.reconnects
    assert len(seen) == count
    assert len(set(seen)) == count  # none twice
    assert proxy.cuts >= 10 and reconnects == proxy.cuts  # it really was cut, and every cut was survived


def test_a_pop3_loop_cut_mid_pipeline_and_every_few_hundred_kb_yields_each_message_once_with_its_body(
    dovecot: Dovecot, mailbox_user: str
) -> None:
    """POP3 sends a chunk's TOPs together and the next RETR before it is asked for: a cut in either is
    ridden out, and what the loop yields is what an uncut loop yields."""
    dovecot.deliver_many(mailbox_user, generate(250, seed=8))
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}

    def read(session: postroom.Session) -> list[tuple[str, str | None, str | None, list[str]]]:
        return [(str(m.key), m.subject, m.text, m.attachment_names) for m in postroom.messages(session, order="oldest")]

    uncut = read(postroom.connect("uncut", server_config(dovecot, "pop3"), variables=variables))
    together = CutRule(rb"^TOP \d+ 0\r\nTOP \d+ 0\r\n", "before", times=2, spacing=2)
    ahead = CutRule(rb"^RETR \d+\r\n", "after", times=3, spacing=60)
    with proxy_to(dovecot, dovecot.ports["pop3s"], every=(500_000, 1_500_000), rules=[together, ahead]) as proxy:
        fast = postroom.ReconnectPolicy(attempts=5, backoff=0.05, max_backoff=0.2)
        config = server_config(dovecot, "pop3", port=proxy.port)
        session = postroom.connect("cut-pop3", config, variables=variables, reconnect=fast)
        seen = read(session)
        reconnects = session.reconnects
    assert len(uncut) == 250
    assert seen == uncut  # each once, in order, bodies and attachments whole
    assert together.matches >= 2  # the TOPs really went out in one write
    assert together.times == 0 and ahead.times == 0
    assert proxy.cuts >= 8 and reconnects == proxy.cuts


def test_a_pop3_loop_that_deletes_as_it_reads_through_cuts_reports_every_deletion_as_what_happened(
    dovecot: Dovecot, mailbox_user: str
) -> None:
    """Cuts after a RETR sent ahead and after a DELE the server took (it rolls the deletion back on the
    drop): every result is done or already done, and every message is gone once the session quits."""
    dovecot.deliver_many(mailbox_user, generate(40, seed=9))
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    ahead = CutRule(rb"^RETR \d+\r\n", "after", times=3, spacing=7)
    dele = CutRule(rb"^DELE \d+\r\n", "after", times=3, spacing=9)
    with proxy_to(dovecot, dovecot.ports["pop3s"], rules=[ahead, dele]) as proxy:
        fast = postroom.ReconnectPolicy(attempts=5, backoff=0.05, max_backoff=0.2)
        config = server_config(dovecot, "pop3", port=proxy.port)
        session = postroom.connect("cut-pop3-delete", config, variables=variables, reconnect=fast)
        results = []
        for message in postroom.messages(session, order="oldest"):
            assert message.text is not None
            results.extend(postroom.delete(session, message))
        postroom.disconnect("cut-pop3-delete")  # QUIT commits the deletions
    assert proxy.cuts == 6
    assert len(results) == 40
    assert {r.status for r in results} <= {"done", "already_done"}
    check = postroom.connect("check-pop3", server_config(dovecot, "pop3"), variables=variables)
    assert list(postroom.messages(check)) == []


def test_a_drop_the_policy_cannot_ride_out_says_how_often_it_tried(dovecot: Dovecot, mailbox_user: str) -> None:
    dovecot.deliver_many(mailbox_user, generate(300, seed=3))
    with proxy_to(dovecot, dovecot.ports["imaps"], rules=[CutRule(rb"UID FETCH", "after", times=100)]) as proxy:
        session = imap_through(dovecot, proxy, mailbox_user)
        with pytest.raises(ConnectionLostError) as raised:
            list(postroom.messages(session))
    assert "5 reconnect(s) in a row did not hold" in str(raised.value)
    assert "nothing was changed" in str(raised.value)


@pytest.mark.parametrize("when", ["before", "after"])
def test_moves_cut_before_and_after_the_server_acts_report_what_the_server_did(
    dovecot: Dovecot, mailbox_user: str, when: Literal["before", "after"]
) -> None:
    dovecot.deliver_many(mailbox_user, generate(12, seed=5))
    postroom.create_folder(direct(dovecot, mailbox_user), "Done")
    rule = CutRule(rb"UID MOVE", when, times=6, spacing=2)  # every other move is cut once
    with proxy_to(dovecot, dovecot.ports["imaps"], rules=[rule]) as proxy:
        session = imap_through(dovecot, proxy, mailbox_user)
        results = [postroom.move(session, message, "Done")[0] for message in list(postroom.messages(session))]
    assert proxy.cuts == 6
    assert [r.status for r in results].count("failed") == 0
    if when == "after":  # the server moved them before the cut: reported as already done, with the new key
        assert [r.status for r in results].count("already_done") == 6
        assert all(r.new_key is not None for r in results)
    check = direct(dovecot, mailbox_user)
    assert len(list(postroom.messages(check, "Done"))) == 12  # every one moved, none twice
    assert list(postroom.messages(check)) == []


def test_a_3_mb_attachment_is_saved_whole_through_a_connection_cut_every_few_hundred_kb(
    dovecot: Dovecot, mailbox_user: str, tmp_path: Path
) -> None:
    """Each drop keeps what was written and carries on from there, in smaller ranges."""
    data = random.Random(4).randbytes(3 << 20)
    dovecot.deliver(mailbox_user, simple("big", attachments={"big.bin": data, "small.pdf": b"%PDF-1.4 small"}))
    with proxy_to(dovecot, dovecot.ports["imaps"], every=(200_000, 800_000)) as proxy:
        session = imap_through(dovecot, proxy, mailbox_user)
        message = next(postroom.messages(session))
        saved = postroom.save_attachments(message, tmp_path)
        reconnects = session.reconnects
    assert [file.name for file in saved] == ["big.bin", "small.pdf"]
    assert (tmp_path / "big.bin").read_bytes() == data
    assert proxy.cuts >= 3 and reconnects == proxy.cuts


@pytest.mark.parametrize("when", ["before", "after"])
def test_deletes_cut_before_and_after_the_server_expunges_report_what_the_server_did(
    dovecot: Dovecot, mailbox_user: str, when: Literal["before", "after"]
) -> None:
    dovecot.deliver_many(mailbox_user, generate(8, seed=6))
    rule = CutRule(rb"UID EXPUNGE", when, times=4, spacing=2)
    with proxy_to(dovecot, dovecot.ports["imaps"], rules=[rule]) as proxy:
        session = imap_through(dovecot, proxy, mailbox_user)
        results = [postroom.delete(session, message)[0] for message in list(postroom.messages(session))]
    assert proxy.cuts == 4
    statuses = [r.status for r in results]
    assert "failed" not in statuses
    if when == "after":  # expunged before the cut: already done, never "not found"
        assert statuses.count("already_done") == 4
    assert list(postroom.messages(direct(dovecot, mailbox_user))) == []  # every one gone, on an uncut connection


def test_a_loop_against_a_server_that_answers_pipelined_commands_at_once_yields_each_message_once(
    dovecot: Dovecot, mailbox_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies to the FETCH commands a loop keeps on their way come mixed up: the next command's before an
    earlier one completes, and completions out of order (RFC 3501 §5.5; Dovecot does it now and then).
    Every message still comes once, in order, with its own text, including bodies fetched ahead."""
    from postroom.actions import loop
    from postroom.transports.imap import connection

    monkeypatch.setattr(loop, "FIRST_CHUNK", 10)
    monkeypatch.setattr(loop, "LOOP_CHUNK", 40)
    monkeypatch.setattr(connection, "SUMMARY_CHUNK", 15)
    mix = list(generate(120, seed=5))
    for number in range(120):  # the plain part of mixed > alternative is section 1.1: bodies fetched ahead
        mix.insert(
            number * 2,
            simple(f"nested {number}", body=f"nested body {number}\n", html="<p>x</p>", attachments={"a.pdf": b"%PDF"}),
        )
    dovecot.deliver_many(mailbox_user, mix)
    check = direct(dovecot, mailbox_user)
    expected = [(str(m.key), m.text) for m in postroom.messages(check, order="oldest")]
    assert len(expected) == len(mix)
    with proxy_to(dovecot, dovecot.ports["imaps"], reorder=True) as proxy:
        session = imap_through(dovecot, proxy, mailbox_user, name="reordered")
        seen = []
        for message in postroom.messages(session, order="oldest"):
            seen.append((str(message.key), message.text))
            if len(seen) % 25 == 0:  # a read-only command mid-chunk, with replies still on their way
                assert postroom.get_message(session, message.key).subject == message.subject
    assert seen == expected
    assert proxy.reordered >= 10  # it really did answer out of order
    assert session.reconnects == 0
