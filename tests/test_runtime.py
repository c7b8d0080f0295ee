"""Runtimes own their sessions; the actions run unchanged on the in-memory mailbox (no network)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

import postroom
from postroom import Runtime, SessionNotFoundError
from postroom.actions import loop
from postroom.testing import InMemory, MemoryServer
from tests.mail_samples import PDF, simple


@pytest.fixture
def server() -> Iterator[MemoryServer]:
    name = f"rt-{uuid.uuid4().hex[:8]}"
    found = MemoryServer.named(name)
    yield found
    MemoryServer.forget(name)


def test_two_runtimes_in_one_process_never_see_each_others_sessions(server: MemoryServer) -> None:
    other = MemoryServer.named(server.name + "-other")
    server.deliver(simple("for the first bot"))
    other.deliver(simple("for the second bot"))
    first, second = Runtime(name="first"), Runtime(name="second")
    first.connect("invoices", InMemory(server=server.name))
    second.connect("invoices", InMemory(server=other.name))  # the same name: no clash
    assert [m.subject for m in postroom.messages(second.get_session("invoices"))] == ["for the second bot"]
    with pytest.raises(SessionNotFoundError):
        postroom.get_session("invoices")  # the default runtime has none
    with first:  # names given to actions are looked up in the current runtime
        assert [m.subject for m in postroom.messages("invoices")] == ["for the first bot"]
        assert postroom.open_sessions() == ["invoices"]
    assert first.open_sessions() == []  # leaving the block disconnected first's sessions, and only those
    assert second.open_sessions() == ["invoices"]
    second.disconnect_all()
    MemoryServer.forget(other.name)


def test_a_runtime_is_current_only_in_its_own_thread(server: MemoryServer) -> None:
    seen: list[list[str]] = []
    with Runtime() as runtime:
        runtime.connect("mine", InMemory(server=server.name))
        thread = threading.Thread(target=lambda: seen.append(postroom.open_sessions()))
        thread.start()
        thread.join()
        assert postroom.open_sessions() == ["mine"]
    assert seen == [[]]


def test_a_session_closed_with_with_leaves_its_runtime(server: MemoryServer) -> None:
    runtime = Runtime()
    with runtime.connect("x", InMemory(server=server.name)):
        assert runtime.open_sessions() == ["x"]
    assert runtime.open_sessions() == []


def test_actions_on_the_in_memory_mailbox(server: MemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "FIRST_CHUNK", 2)
    monkeypatch.setattr(loop, "LOOP_CHUNK", 3)
    for number in range(10):
        attachments = {f"invoice-{number}.pdf": PDF} if number % 2 == 0 else None
        server.deliver(simple(f"message {number}", body=f"body {number}\n", attachments=attachments))
    server.create_folder("Done")
    with Runtime() as runtime:
        session = runtime.connect("bot", InMemory(server=server.name))
        seen = []
        for message in postroom.messages(session, order="oldest"):
            assert message.text == f"body {len(seen)}\n"  # bodies come in bulk per chunk
            assert message.has_attachments == (len(seen) % 2 == 0)
            seen.append(message.subject)
            if message.subject == "message 3":  # a change drops what was fetched ahead, nothing is skipped
                assert postroom.mark_read(session, message)[0].status == "done"
        assert seen == [f"message {n}" for n in range(10)]
        assert [m.subject for m in postroom.messages(session, status="read")] == ["message 3"]
        results = postroom.move_all(session, "Done", subject=r"message [02468]", regex=True)
        assert [r.status for r in results] == ["done"] * 5
        assert [entry[0] for entry in server.log] == ["seen"] + ["move"] * 5  # what the bot did, in order
        assert len(server.messages("Done")) == 5 and len(server.messages("INBOX")) == 5
        deleted = postroom.delete(session, list(postroom.messages(session, folder="Done", limit=2)))
        assert [r.status for r in deleted] == ["done", "done"] and len(server.messages("Done")) == 3
        assert [f.name for f in postroom.folders(session)] == ["Done", "INBOX"]


def test_a_dropped_connection_reconnects_and_the_loop_goes_on(server: MemoryServer) -> None:
    for number in range(4):
        server.deliver(simple(f"message {number}"))
    with Runtime() as runtime:
        session = runtime.connect("bot", InMemory(server=server.name))
        subjects = []
        for message in postroom.messages(session, order="oldest"):
            subjects.append(message.subject)
            if len(subjects) == 2:
                session.call(lambda mailbox: setattr(mailbox, "drop_next", 1))
                assert message.raw().startswith(b"From:") or b"Subject" in message.raw()
        assert subjects == [f"message {n}" for n in range(4)] and session.reconnects == 1


def test_message_from_bytes_reads_an_eml_without_a_session() -> None:
    raw = simple("Invoice 7", body="Please pay.\n", attachments={"invoice-7.pdf": PDF})
    message = postroom.Message.from_bytes(raw)
    assert message.subject == "Invoice 7" and message.text == "Please pay.\n"
    assert message.attachment_names == ["invoice-7.pdf"]
    assert message.properties()["key"] == str(message.key) and str(message.key).startswith("eml:")
    assert postroom.MessageKey.parse(str(message.key)) == message.key


def test_the_in_memory_mailbox_reports_a_change_done_before_a_drop_as_already_done(server: MemoryServer) -> None:
    for number in range(3):
        server.deliver(simple(f"message {number}"))
    server.create_folder("Done")
    with Runtime() as runtime:
        session = runtime.connect("bot", InMemory(server=server.name))
        found = list(postroom.messages(session, order="oldest"))
        session.call(lambda mailbox: setattr(mailbox, "drop_after", "move"))
        results = postroom.move(session, found, "Done")
        assert [r.status for r in results] == ["already_done"] * 3 and session.reconnects == 1
        assert [postroom.get_message(session, r.new_key).subject for r in results if r.new_key] == [
            "message 0",
            "message 1",
            "message 2",
        ]
        assert [r.status for r in postroom.move(session, found[0], "Done")] == ["failed"]


def test_a_message_sent_before_a_drop_is_never_sent_again(server: MemoryServer) -> None:
    """Submitting is never repeated after a dropped connection (RETRY_POLICIES["submit"]): the error says
    the message may have gone out, and the server holds it once."""
    from postroom.session.retry import RETRY_POLICIES

    assert RETRY_POLICIES["submit"].repeat is False and RETRY_POLICIES["move"].repeat
    with Runtime() as runtime:
        session = runtime.connect("bot", InMemory(server=server.name))
        session.call(lambda mailbox: setattr(mailbox, "drop_after", "submit"))
        with pytest.raises(postroom.MailServerError, match="it may have been sent") as raised:
            postroom.send(session, to="someone@example.test", subject="once", body="x", sender="bot@example.test")
        assert "before sending again" in (raised.value.hint or "")
        assert len(server.sent) == 1
        postroom.send(session, to="someone@example.test", subject="next", body="y", sender="bot@example.test")
        assert len(server.sent) == 2 and session.reconnects == 1


def test_a_bad_key_among_many_replies_sends_nothing(server: MemoryServer) -> None:
    server.deliver(simple("question", sender="Customer <customer@example.test>"))
    with Runtime() as runtime:
        session = runtime.connect("bot", InMemory(server=server.name))
        good = next(postroom.messages(session))
        with pytest.raises(postroom.ConfigError, match="not a message key"):
            postroom.reply(session, [good, "no such key"], "Answered.", sender="bot@example.test")
        assert server.sent == []  # checked before the first reply went out


def test_flags_work_on_the_in_memory_mailbox_as_on_imap(server: MemoryServer) -> None:
    server.deliver(simple("to flag"))
    with Runtime() as runtime:
        session = runtime.connect("bot", InMemory(server=server.name))
        message = next(postroom.messages(session))
        assert [r.status for r in postroom.add_flags(session, message, "\\Flagged", "Invoice")] == ["done"]
        again = next(postroom.messages(session))
        assert again.flagged is True and "Invoice" in (again.flags or set())
