"""Real-looking .eml files paired with the properties a user expects of them (``fixtures/eml/expected.json``),
read three ways that must agree: from the bytes, from the in-memory mailbox, and from Dovecot over IMAP."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import postroom
from postroom import Message, Session
from postroom.testing import InMemory, MemoryServer
from tests.servers.dovecot import Dovecot

FIXTURES = Path(__file__).parent / "fixtures" / "eml"
EXPECTED: dict[str, dict[str, Any]] = json.loads((FIXTURES / "expected.json").read_text(encoding="utf-8"))
#: What may differ by where the message was read: its key, the server's arrival time and size, its flags, and
#: the defects (a path that reads the whole header names more of them than one that reads ten fields).
WHERE = {"key", "uid", "folder", "received_date", "size", "seen", "flagged", "headers", "defects"}


def check(name: str, message: Message) -> dict[str, Any]:
    found: dict[str, Any] = dict(message.properties())
    for field, value in EXPECTED[name].items():
        assert found[field] == value, f"{name}: {field}"
    return {k: v for k, v in found.items() if k not in WHERE}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_properties_from_the_bytes(name: str) -> None:
    check(name, Message.from_bytes((FIXTURES / name).read_bytes()))


def test_the_malformed_one_never_raises_and_says_what_it_could_not_read() -> None:
    message = Message.from_bytes((FIXTURES / "malformed.eml").read_bytes())
    found = message.properties()
    assert isinstance(found["subject"], str) and "caf" in found["subject"]
    assert found["text"] is not None and "body" in found["text"]
    assert found["defects"], "the unknown charsets and the broken header are named"


def test_html_only_mail_has_a_text_derived_from_its_html() -> None:
    text = Message.from_bytes((FIXTURES / "html-only.eml").read_bytes()).text
    assert "Big sale today." in text and "Second line" in text and "<" not in text


def test_every_way_of_reading_gives_the_same_properties(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    memory = MemoryServer.named(f"eml-{uuid.uuid4().hex[:8]}")
    names = sorted(EXPECTED)
    for name in names:
        raw = (FIXTURES / name).read_bytes()
        memory.deliver(raw)
        dovecot.deliver(mailbox_user, raw)
    from_bytes = [check(name, Message.from_bytes((FIXTURES / name).read_bytes())) for name in names]
    with postroom.connect("eml", InMemory(server=memory.name)) as session:
        in_memory = [check(name, m) for name, m in zip(names, postroom.messages(session, order="oldest"), strict=True)]
    over_imap = [check(name, m) for name, m in zip(names, postroom.messages(imap, order="oldest"), strict=True)]
    for name, a, b, c in zip(names, from_bytes, in_memory, over_imap, strict=True):
        for field in a:
            assert b[field] == a[field], f"{name} {field}: in memory {b[field]!r}, from the bytes {a[field]!r}"
            assert c[field] == a[field], f"{name} {field}: over IMAP {c[field]!r}, from the bytes {a[field]!r}"
    MemoryServer.forget(memory.name)


def test_where_the_header_ends() -> None:
    from postroom.message.raw import header_block_of

    # LF line ends, and a CRLF empty line later in the body: the header ends at the first empty line
    assert header_block_of(b"Subject: a\n\nline 1\r\n\r\nline 2\r\n") == b"Subject: a\n"
    assert header_block_of(b"Subject: a\r\n\r\nbody\n\nmore\n") == b"Subject: a\r\n"
    # no empty line at all: nothing is dropped as a broken header line, the body stays readable
    message = Message.from_bytes(b"Subject: no separator\r\nbody text without an empty line before it\r\n")
    assert message.subject == "no separator"
    assert "body text without an empty line" in message.text
