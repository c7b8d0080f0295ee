"""Move, move all, delete, mark read/unread: by stable keys, batched, one result per message."""

from __future__ import annotations

import imaplib

import pytest

import postroom
from postroom import ItemResult, Session, UnsupportedError
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import simple
from tests.servers.dovecot import Dovecot


def fill(dovecot: Dovecot, user: str, count: int, folder: str = "INBOX") -> None:
    for number in range(1, count + 1):
        dovecot.deliver(user, simple(f"message {number}"), folder=folder)


def subjects(session: Session, **filters: object) -> list[str]:
    return sorted(m.subject for m in postroom.messages(session, **filters))  # type: ignore[arg-type]


def raw_imap(dovecot: Dovecot, user: str) -> imaplib.IMAP4:
    """A plain imaplib connection, to look at the mailbox independently of postroom."""
    assert dovecot.certs is not None
    import ssl

    client = imaplib.IMAP4_SSL(
        "localhost", dovecot.ports["imaps"], ssl_context=ssl.create_default_context(cafile=dovecot.certs.ca_file)
    )
    client.login(user, PASSWORD)
    return client


def test_move_one_and_results_in_order(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 3)
    dovecot.deliver(mailbox_user, simple("seed"), folder="Processed")
    found = list(postroom.messages(imap, order="oldest"))
    results = postroom.move(imap, [found[2], found[0]], "Processed")
    assert [r.key for r in results] == [found[2].key, found[0].key]
    assert all(r.ok for r in results)
    assert all(r.new_key is not None and r.new_key.folder == "Processed" for r in results)
    assert subjects(imap) == ["message 2"]
    assert subjects(imap, folder="Processed") == ["message 1", "message 3", "seed"]
    again = postroom.move(imap, found[0], "Processed")
    assert again == [ItemResult(found[0].key, "failed", "not found: already moved or deleted")]
    assert isinstance(again[0].error, postroom.ProtocolError) and not again[0].ok


def test_moving_inside_the_loop_never_skips_or_repeats(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 700)  # more than one header chunk
    dovecot.deliver(mailbox_user, simple("seed"), folder="Done")
    handled = []
    for message in postroom.messages(imap, order="oldest"):
        handled.append(message.subject)
        assert postroom.move(imap, message, "Done")[0].ok
    assert len(handled) == len(set(handled)) == 700
    assert subjects(imap) == []


def test_a_deleted_flagged_message_survives_a_move_of_others(
    dovecot: Dovecot, mailbox_user: str, imap: Session
) -> None:
    fill(dovecot, mailbox_user, 3)
    dovecot.deliver(mailbox_user, simple("seed"), folder="Processed")
    client = raw_imap(dovecot, mailbox_user)
    client.select("INBOX")
    client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")  # another client marked it, not yet expunged
    moved = [m for m in postroom.messages(imap, order="oldest") if m.subject != "message 2"]
    assert all(r.ok for r in postroom.move(imap, moved, "Processed"))
    client.noop()  # let the server tell this client about the expunges
    _typ, data = client.uid("SEARCH", "ALL")
    assert data[0].split() == [b"2"]  # still there, still \Deleted
    client.logout()


def test_move_all_by_filter(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    for subject in ("Invoice 1", "Invoice 2", "Newsletter", "invoice 3"):
        dovecot.deliver(mailbox_user, simple(subject))
    dovecot.deliver(mailbox_user, simple("seed"), folder="Invoices")
    results = postroom.move_all(imap, "Invoices", subject=r"^invoice \d", regex=True)
    assert len(results) == 3 and all(r.ok for r in results)
    assert subjects(imap) == ["Newsletter"]


def test_move_to_a_missing_folder_is_a_clear_error(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 1)
    with pytest.raises(postroom.ConfigError, match="no folder 'Nowhere'") as raised:
        postroom.move(imap, next(postroom.messages(imap)), "Nowhere")
    assert raised.value.field == "folder" and "create_folder" in str(raised.value)
    assert raised.value.exit_code == 3  # a setting to fix, not a server to retry
    assert subjects(imap) == ["message 1"]


def test_delete_removes_exactly_those(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 4)
    doomed = [m for m in postroom.messages(imap) if m.subject in {"message 1", "message 3"}]
    assert [r.ok for r in postroom.delete(imap, doomed)] == [True, True]
    assert subjects(imap) == ["message 2", "message 4"]


def test_mark_read_and_unread(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 2)
    first = next(postroom.messages(imap, subject="message 1"))
    assert postroom.mark_read(imap, first)[0].ok
    assert subjects(imap, status="read") == ["message 1"]
    postroom.mark_unread(imap, first)
    assert subjects(imap, status="read") == []


def test_server_without_move_or_uidplus_is_refused_unless_opted_in(
    dovecot_without_move: Dovecot, mailbox_user: str
) -> None:
    dovecot_without_move.add_user(mailbox_user)
    fill(dovecot_without_move, mailbox_user, 3)
    dovecot_without_move.deliver(mailbox_user, simple("seed"), folder="Done")
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    session = postroom.connect("old", server_config(dovecot_without_move), variables=variables)
    assert "MOVE" not in session.call(lambda mb: mb.report()).capabilities
    first = next(postroom.messages(session, subject="message 1"))
    with pytest.raises(UnsupportedError, match="neither MOVE nor UIDPLUS.*nothing was changed"):
        postroom.move(session, first, "Done")
    assert subjects(session) == ["message 1", "message 2", "message 3"]
    client = raw_imap(dovecot_without_move, mailbox_user)
    client.select("INBOX")
    client.uid("STORE", "2", "+FLAGS", "(\\Deleted)")
    results = postroom.move(session, first, "Done", allow_expunge_all=True)
    assert results[0].ok
    assert subjects(session, folder="Done") == ["message 1", "seed"]
    _typ, data = client.uid("SEARCH", "DELETED")
    assert data[0].split() == [b"2"]  # the other client's \Deleted message was not expunged
    client.logout()


def test_pop3_delete_is_committed_on_disconnect(dovecot: Dovecot, mailbox_user: str) -> None:
    fill(dovecot, mailbox_user, 3)
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    session = postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)
    doomed = next(postroom.messages(session, subject="message 2"))
    result = postroom.delete(session, doomed)[0]
    assert result.ok and "disconnects" in result.detail
    assert subjects(session) == ["message 1", "message 3"]
    with pytest.raises(UnsupportedError, match="POP3"):
        postroom.move(session, doomed, "Elsewhere")
    postroom.disconnect("p")
    again = postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)
    assert subjects(again) == ["message 1", "message 3"]


def test_a_pop3_message_deleted_while_its_retr_was_read_ahead_is_gone_for_the_loop(
    dovecot: Dovecot, mailbox_user: str
) -> None:
    """Reading message 1 sends RETR 2 ahead; deleting message 2 before it is read must not serve it anyway."""
    fill(dovecot, mailbox_user, 3)
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    session = postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)
    loop = postroom.messages(session, order="oldest")
    first = next(loop)
    assert first.text is not None  # RETR 1, and RETR 2 is on its way
    second = next(loop)
    assert postroom.delete(session, second)[0].ok
    with pytest.raises(postroom.ProtocolError, match="no longer in the maildrop"):
        second.raw()
    assert next(loop).subject == "message 3"


def test_pop3_deletion_survives_a_dropped_connection(dovecot: Dovecot, mailbox_user: str) -> None:
    fill(dovecot, mailbox_user, 3)
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    session = postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)
    doomed = next(postroom.messages(session, subject="message 2"))
    assert postroom.delete(session, doomed)[0].ok
    dovecot.kick(mailbox_user)  # the server rolls back uncommitted deletions
    assert subjects(session) == ["message 1", "message 3"]  # reconnected; the deletion was sent again
    assert session.reconnects == 1
    postroom.disconnect("p")
    again = postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)
    assert subjects(again) == ["message 1", "message 3"]


def cut_after(command: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The connection drops right after the server carried out ``command`` (its OK never reaches us),
    once; returns a log of the cuts."""
    from postroom.transports.imap.connection import ImapConnection

    cuts: list[str] = []
    original = ImapConnection._uid

    def uid(self: ImapConnection, name: str, *args: str, literal: bytes | None = None) -> tuple[str, list[object]]:
        reply = original(self, name, *args, literal=literal)
        if name == command and not cuts:
            cuts.append(name)
            assert self._client is not None
            self._drop(self._client)
            raise postroom.ConnectionLostError("cut by the test after the server's reply")
        return reply

    monkeypatch.setattr(ImapConnection, "_uid", uid)
    return cuts


def test_a_move_the_server_did_before_the_connection_dropped_is_already_done(
    dovecot: Dovecot, mailbox_user: str, imap: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(dovecot, mailbox_user, 4)
    dovecot.deliver(mailbox_user, simple("seed"), folder="Processed")
    found = list(postroom.messages(imap, order="oldest"))
    cuts = cut_after("MOVE", monkeypatch)
    results = postroom.move(imap, found[:3], "Processed")
    assert cuts == ["MOVE"] and imap.reconnects == 1
    assert [r.status for r in results] == ["already_done"] * 3  # never "failed: not found"
    assert all(r.ok and r.new_key is not None and r.new_key.folder == "Processed" for r in results)
    # each new key names the very message that moved
    moved = [postroom.get_message(imap, r.new_key).subject for r in results if r.new_key is not None]
    assert moved == ["message 1", "message 2", "message 3"]
    assert subjects(imap) == ["message 4"]
    assert subjects(imap, folder="Processed") == ["message 1", "message 2", "message 3", "seed"]
    # a message that another client moved away is still a failure, named
    again = postroom.move(imap, found[0], "Processed")
    assert again[0].status == "failed" and "not found" in again[0].detail


def test_a_delete_the_server_did_before_the_connection_dropped_is_already_done(
    dovecot: Dovecot, mailbox_user: str, imap: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(dovecot, mailbox_user, 3)
    found = list(postroom.messages(imap, order="oldest"))
    cut_after("EXPUNGE", monkeypatch)
    results = postroom.delete(imap, found[:2])
    assert [r.status for r in results] == ["already_done", "already_done"]
    assert subjects(imap) == ["message 3"]


def test_create_folder_with_its_parents_and_again(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    made = postroom.create_folder(imap, "Processed/2026/December")
    assert made.name == "Processed/2026/December"
    names = {f.name for f in postroom.folders(imap)}
    assert {"Processed", "Processed/2026", "Processed/2026/December"} <= names
    assert postroom.create_folder(imap, "Processed/2026/December").name == made.name  # there already: fine
    dovecot.deliver(mailbox_user, simple("to file"))
    moved = postroom.move(imap, next(postroom.messages(imap)), "Processed/2026/December")
    assert moved[0].status == "done"
    with pytest.raises(postroom.ConfigError, match="line break or NUL"):
        postroom.create_folder(imap, "bad\r\nname")


def test_creating_a_folder_on_pop3_is_refused_before_anything_is_sent(pop3: Session) -> None:
    with pytest.raises(UnsupportedError, match="creating folders is not possible on POP3"):
        postroom.create_folder(pop3, "Archive")


def test_move_all_from_a_named_folder_and_its_guard(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 3, folder="Incoming")
    dovecot.deliver(mailbox_user, simple("seed"), folder="Archive")
    with pytest.raises(postroom.ConfigError, match="refusing to move every message of Incoming"):
        postroom.move_all(imap, "Archive", folder="Incoming")  # the filter may be called folder
    assert subjects(imap, folder="Incoming") == ["message 1", "message 2", "message 3"]
    moved = postroom.move_all(imap, "Archive", folder="Incoming", everything=True)
    assert [r.status for r in moved] == ["done"] * 3
    assert subjects(imap, folder="Archive") == ["message 1", "message 2", "message 3", "seed"]


def test_flags_and_keywords_other_than_read(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user, 2)
    first, second = list(postroom.messages(imap, order="oldest"))
    assert [r.status for r in postroom.flag(imap, first)] == ["done"]
    assert [r.status for r in postroom.add_flags(imap, [first, second], "Invoice", "$Label1")] == ["done", "done"]
    found = {m.subject: m for m in postroom.messages(imap)}
    assert found["message 1"].flagged is True and found["message 2"].flagged is False
    assert {"\\Flagged", "Invoice", "$Label1"} <= (found["message 1"].flags or set())
    assert found["message 1"].seen is False  # flagging is not reading
    postroom.unflag(imap, first)
    postroom.remove_flags(imap, second, "Invoice")
    found = {m.subject: m for m in postroom.messages(imap)}
    assert found["message 1"].flagged is False and "Invoice" not in (found["message 2"].flags or set())


@pytest.mark.parametrize("bad", ["two words", "\\Seen", "\\Deleted", "a)b", 'q"uote', "", "x\r\ny", "50%", "a*", "x]"])
def test_a_bad_flag_name_is_refused_before_anything_is_sent(imap: Session, bad: str) -> None:
    with pytest.raises(postroom.ConfigError) as raised:
        postroom.add_flags(imap, [], bad)
    assert raised.value.field == "flags"


def test_flags_on_a_session_without_them_are_refused_by_name(pop3: Session) -> None:
    with pytest.raises(postroom.UnsupportedError, match="flags other than read"):
        postroom.flag(pop3, [])
