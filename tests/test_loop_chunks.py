"""A loop across chunks: the next chunk's summaries are on their way while the loop's body runs.

Chunks are made tiny here (2, then 3 messages; 2 UIDs per FETCH command) so that a
few messages cross every boundary: fetched ahead, kept across a read-only command,
dropped by a change, lost with the connection.
"""

from __future__ import annotations

import pytest

import postroom
from postroom import Session
from postroom.actions import loop
from postroom.transports.imap import connection
from postroom.transports.imap import mailbox as imap
from postroom.transports.imap.keys import ImapKey
from tests.mail_samples import simple
from tests.servers.dovecot import Dovecot

COUNT = 14


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "FIRST_CHUNK", 2)
    monkeypatch.setattr(loop, "LOOP_CHUNK", 3)
    monkeypatch.setattr(connection, "SUMMARY_CHUNK", 2)


@pytest.fixture
def collected(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many summaries each collect_ahead call returned (None: dropped)."""
    counts: list[int] = []
    original = imap.ImapMailbox.collect_ahead

    def spy(self: imap.ImapMailbox, keys: list[ImapKey], *, bodies: bool = False) -> object:
        found = original(self, keys, bodies=bodies)
        counts.append(-1 if found is None else len(found))
        return found

    monkeypatch.setattr(imap.ImapMailbox, "collect_ahead", spy)
    return counts


def fill(dovecot: Dovecot, user: str) -> None:
    dovecot.deliver(user, simple("seed"), folder="Elsewhere")
    for number in range(COUNT):
        dovecot.deliver(user, simple(f"message {number:02d}", body=f"body {number}\n"))


def test_a_loop_that_reads_gets_every_message_once_with_chunks_fetched_ahead(
    dovecot: Dovecot, mailbox_user: str, imap: Session, collected: list[int]
) -> None:
    fill(dovecot, mailbox_user)
    seen = []
    for message in postroom.messages(imap, order="oldest"):
        assert message.text == f"body {len(seen)}\n"
        assert message.raw().startswith(b"From:") or b"Subject:" in message.raw()  # a command mid-chunk
        seen.append(message.subject)
    assert seen == [f"message {n:02d}" for n in range(COUNT)]
    # chunks 3, 4 and 5 (of 2, 3, 3, 3, 3) came from requests sent ahead, kept across the raw() commands
    assert collected == [3, 3, 3]


def test_a_change_in_the_loop_body_drops_what_was_fetched_ahead(
    dovecot: Dovecot, mailbox_user: str, imap: Session, collected: list[int]
) -> None:
    fill(dovecot, mailbox_user)
    everything = list(postroom.messages(imap, order="oldest"))
    collected.clear()
    later = everything[5:8]  # the third chunk: on its way while the loop's body runs on the second
    seen = []
    for message in postroom.messages(imap, order="oldest"):
        seen.append(message.subject)
        if message.subject == "message 02":
            assert all(result.ok for result in postroom.move(imap, later, "Elsewhere"))
    moved = {m.subject for m in later}
    assert seen == [m.subject for m in everything if m.subject not in moved]  # never a message already moved
    assert collected == [-1]  # dropped by the move; later chunks were fetched when due


def test_leaving_a_loop_early_leaves_the_session_in_step(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user)
    for message in postroom.messages(imap, order="oldest"):
        if message.subject == "message 03":
            break  # the next chunk's replies are still on the way
    first = next(postroom.messages(imap, order="oldest"))
    assert postroom.move(imap, first, "Elsewhere")[0].ok
    assert len(list(postroom.messages(imap))) == COUNT - 1
    assert sorted(m.subject for m in postroom.messages(imap, folder="Elsewhere")) == ["message 00", "seed"]


def test_a_connection_lost_with_a_chunk_on_its_way(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    fill(dovecot, mailbox_user)
    seen = []
    for message in postroom.messages(imap, order="oldest"):
        seen.append(message.subject)
        if message.subject == "message 03":
            dovecot.kick(mailbox_user)
    assert seen == [f"message {n:02d}" for n in range(COUNT)]
    assert imap.reconnects == 1


def test_a_lookup_by_key_in_the_loop_body_keeps_what_was_fetched_ahead(
    dovecot: Dovecot, mailbox_user: str, imap: Session, collected: list[int]
) -> None:
    """get_message mid-chunk reads the replies sent ahead first; they must still be there for the loop."""
    fill(dovecot, mailbox_user)
    first = next(postroom.messages(imap, order="oldest"))
    seen = []
    for message in postroom.messages(imap, order="oldest"):
        assert message.text == f"body {len(seen)}\n"
        assert postroom.get_message(imap, first.key).subject == "message 00"
        seen.append(message.subject)
    assert seen == [f"message {n:02d}" for n in range(COUNT)]
    assert collected == [3, 3, 3]


def test_text_bodies_of_the_next_chunk_are_on_their_way_with_its_summaries(
    dovecot: Dovecot, mailbox_user: str, imap: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bodies that do not come with a summary (the plain part of mixed > alternative is section 1.1) are
    sent for ahead too: past the chunk where the loop learns it reads them, no chunk waits for a FETCH."""
    for number in range(COUNT):
        message = simple(
            f"message {number:02d}", body=f"body {number}\n", html="<p>html</p>", attachments={"a.pdf": b"%PDF"}
        )
        dovecot.deliver(mailbox_user, message)
    waited_for: list[list[int]] = []  # UIDs of body FETCHes sent and read at once
    original = connection.ImapConnection._fetch_many

    def spy(self: connection.ImapConnection, uids: list[int], request: str, parse: object) -> object:
        if "BODY.PEEK[1.1]" in request:
            waited_for.append(uids)
        return original(self, uids, request, parse)  # type: ignore[arg-type]

    monkeypatch.setattr(connection.ImapConnection, "_fetch_many", spy)
    texts = [message.text for message in postroom.messages(imap, order="oldest")]
    assert texts == [f"body {n}\n" for n in range(COUNT)]
    # chunk 0 (of 2, 3, 3, 3, 3) is where the loop learns it reads bodies, and chunk 1's summaries were
    # read before it knew; the bodies of chunks 2 to 4 were on their way before they were wanted
    assert waited_for == [[1, 2], [3, 4, 5]]
