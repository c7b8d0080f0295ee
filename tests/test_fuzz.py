"""Malformed mail never raises: a fixed-seed fuzz run offline, through IMAP and through POP3.

The long run (hundreds of thousands of mutations, counted per exception site) is ``bench/fuzz.py``.
"""

from __future__ import annotations

import itertools
import json
import tempfile
import time
from pathlib import Path

import postroom
from postroom import Message, Session
from postroom.message.saving import save_attachments
from tests import fuzzing
from tests.conftest import PASSWORD, server_config
from tests.servers.dovecot import Dovecot

SEED = 20261201


def test_2000_mutated_messages_read_offline_without_raising() -> None:
    failures = fuzzing.run(SEED, 2000)
    assert {site: len(found) for site, found in failures.items()} == {}


def test_the_codecs_mail_names_that_are_no_charsets_read_as_utf8_with_a_defect() -> None:
    for charset in ("rot13", "zlib", "hex", "base64", "bz2", "uu", "idna", "punycode", "utf\x00-8", "undefined"):
        raw = (
            f'Subject: =?{charset}?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset="{charset}"\r\n'
            "Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
        ).encode("latin-1")
        message = Message.from_bytes(raw)
        assert message.subject == "café", charset
        assert message.text == "café\n", charset
        assert any("unknown charset" in defect for defect in message.defects), charset


def test_parameters_the_stdlib_fails_on_are_read_plainly() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n"
        b"Content-Type: application/pdf; name*0=a; name*=b\r\n"
        b"Content-Transfer-Encoding: b\xe4se64\r\n\r\nJVBERg==\r\n--b--\r\n"
    )
    message = Message.from_bytes(raw)
    assert message.text == "hi"
    assert message.attachment_names == ["ab"]


def test_deep_nesting_is_bounded_in_time_and_saves_what_it_describes(tmp_path: Path) -> None:
    """1,000 attached emails nested in 32 KB took 20 s and then raised; now it is read in well under a second."""
    inner = b"From: a@example.test\r\nSubject: innermost\r\n\r\nbody\r\n"
    raw = b"Subject: top\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 1000 + inner
    started = time.process_time()
    message = Message.from_bytes(raw)
    message.properties(with_headers=True)
    saved = save_attachments(message, tmp_path, include_nested=True)
    assert time.process_time() - started < 5  # a bound against the old 20 s, not a benchmark
    assert message.subject == "top"
    assert saved  # the top-level attached email, at least, is on disk
    assert message.defects


def test_a_megabyte_header_reads_in_linear_time() -> None:
    raw = b"Subject: long\r\nX-Big: " + b"a " * 650_000 + b"\r\nFrom: " + b"(" * 5000 + b"\r\n\r\nbody\r\n"
    started = time.process_time()
    message = Message.from_bytes(raw)
    props = message.properties(with_headers=True)
    assert time.process_time() - started < 3  # 7.9 s before
    assert props["subject"] == "long"
    assert props["text"] == "body\n"


def _deliver_mutations(dovecot: Dovecot, user: str, count: int) -> int:
    return dovecot.deliver_many(user, itertools.islice(fuzzing.mutations(SEED + 1, count), count))


def _read_all(session: Session) -> int:
    read = 0
    with tempfile.TemporaryDirectory() as tmp:
        for message in postroom.messages(session, order="oldest"):
            json.dumps(message.properties(with_headers=True))
            save_attachments(message, tmp, include_inline=True, include_nested=True, overwrite=True)
            read += 1
    return read


def test_150_mutated_messages_through_imap(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    delivered = _deliver_mutations(dovecot, mailbox_user, 150)
    assert _read_all(imap) == delivered


def test_150_mutated_messages_through_pop3(dovecot: Dovecot, mailbox_user: str) -> None:
    delivered = _deliver_mutations(dovecot, mailbox_user, 150)
    pop3 = postroom.connect(
        "p", server_config(dovecot, "pop3"), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    )
    assert _read_all(pop3) == delivered
