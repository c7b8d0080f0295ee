"""Save attachments and save email: decoded names made safe, streamed, never outside the folder."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

import postroom
from postroom import Session
from postroom.message.filenames import safe_filename
from tests.mail_samples import HOSTILE, PDF, simple
from tests.servers.dovecot import Dovecot


def only_message(session: Session) -> postroom.Message:
    found = list(postroom.messages(session))
    assert len(found) == 1
    return found[0]


def inside(folder: Path, paths: list[Path]) -> bool:
    root = folder.resolve()
    return all(path.resolve().parent == root for path in paths)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_attachments_are_saved_safely(
    dovecot: Dovecot, mailbox_user: str, imap: Session, tmp_path: Path, case: str
) -> None:
    data, expected_names = HOSTILE[case]
    dovecot.deliver(mailbox_user, data)
    target = tmp_path / "out"
    saved = only_message(imap).save_attachments(target)
    assert [s.path.name for s in saved] == expected_names
    assert inside(target, [s.path for s in saved])
    assert sorted(p.name for p in target.iterdir()) == sorted(expected_names)  # nothing else, no .partial left
    assert {p.parent for p in tmp_path.rglob("*") if p.is_file()} == ({target} if expected_names else set())


def test_contents_are_byte_identical_and_names_decoded(
    dovecot: Dovecot, mailbox_user: str, imap: Session, tmp_path: Path
) -> None:
    big = bytes(range(256)) * 5000  # 1.28 MB: streamed in several ranges
    dovecot.deliver(mailbox_user, simple("files", attachments={"Grüße.pdf": PDF, "big.bin": big}))
    saved = only_message(imap).save_attachments(tmp_path)
    assert [s.name for s in saved] == ["Grüße.pdf", "big.bin"]
    assert (tmp_path / "Grüße.pdf").read_bytes() == PDF
    assert (tmp_path / "big.bin").read_bytes() == big
    assert saved[1].size == len(big)


def test_keep_both_overwrite_and_pattern(dovecot: Dovecot, mailbox_user: str, imap: Session, tmp_path: Path) -> None:
    dovecot.deliver(mailbox_user, simple("files", attachments={"a.pdf": PDF, "b.txt.bin": b"b"}))
    message = only_message(imap)
    message.save_attachments(tmp_path)
    again = message.save_attachments(tmp_path)
    assert [s.path.name for s in again] == ["a (2).pdf", "b.txt (2).bin"]
    overwritten = message.save_attachments(tmp_path, overwrite=True)
    assert [s.path.name for s in overwritten] == ["a.pdf", "b.txt.bin"]
    only_pdf = message.save_attachments(tmp_path / "pdf", pattern="*.PDF")
    assert [s.path.name for s in only_pdf] == ["a.pdf"]


def test_nested_message_saved_as_eml_and_its_attachments_on_request(
    dovecot: Dovecot, mailbox_user: str, imap: Session, tmp_path: Path
) -> None:
    dovecot.deliver(mailbox_user, HOSTILE["nested rfc822"][0])
    message = only_message(imap)
    saved = message.save_attachments(tmp_path / "a")
    assert [s.path.name for s in saved] == ["original.eml"]
    inner = email.message_from_bytes(saved[0].path.read_bytes(), policy=email.policy.default)
    assert inner["subject"] == "original"
    deep = message.save_attachments(tmp_path / "b", include_nested=True)
    assert [s.path.name for s in deep] == ["original.eml", "inner.pdf"]
    assert (tmp_path / "b" / "inner.pdf").read_bytes() == PDF


def test_save_email_is_byte_for_byte(dovecot: Dovecot, mailbox_user: str, imap: Session, tmp_path: Path) -> None:
    original = simple("Rechnung: März/April?", attachments={"x.pdf": PDF})
    dovecot.deliver(mailbox_user, original)
    message = only_message(imap)
    path = message.save(tmp_path)
    assert path.name == "Rechnung_ März_April_.eml"
    assert path.read_bytes() == original
    explicit = postroom.save_email(message, tmp_path / "copy.eml")
    assert explicit.read_bytes() == original
    again = postroom.save_email(message, tmp_path / "copy.eml")  # both kept, as save_attachments keeps both
    assert again.name == "copy (2).eml" and again.read_bytes() == original
    assert explicit.read_bytes() == original
    assert postroom.save_email(message, tmp_path / "copy.eml", overwrite=True) == explicit


def test_pop3_saves_the_same_files(dovecot: Dovecot, mailbox_user: str, tmp_path: Path) -> None:
    from tests.test_loop import pop3_session

    dovecot.deliver(mailbox_user, HOSTILE["rfc2231 name"][0])
    session = pop3_session(dovecot, mailbox_user)
    saved = only_message(session).save_attachments(tmp_path)
    assert [s.path.name for s in saved] == ["Rechnung Müller €.pdf"]
    assert saved[0].path.read_bytes() == PDF


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
        ("nul", "_nul"),
        ("LPT1.txt", "_LPT1.txt"),
        ("a\x00b\x1fc.pdf", "a_b_c.pdf"),
        ("  .hidden. ", "hidden"),
        ("", "attachment"),
        ("..", "attachment"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
        ("ü" * 150 + ".pdf", "ü" * 98 + ".pdf"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe
    assert len(safe_filename(name).encode()) <= 200


def test_pop3_reads_a_message_once_for_structure_body_and_attachments(
    dovecot: Dovecot, mailbox_user: str, tmp_path: Path
) -> None:
    from tests.test_loop import pop3_session

    dovecot.deliver(mailbox_user, simple("once", body="text\n", attachments={"a.pdf": PDF, "b.pdf": PDF}))
    session = pop3_session(dovecot, mailbox_user)
    client = session._mailbox._client  # type: ignore[union-attr]
    sent: list[bytes] = []
    real_putline = client._putline

    def putline(line: bytes) -> None:
        sent.append(line)
        real_putline(line)

    client._putline = putline
    message = only_message(session)
    assert message.text == "text\n"
    assert [s.path.name for s in message.save_attachments(tmp_path)] == ["a.pdf", "b.pdf"]
    assert (tmp_path / "b.pdf").read_bytes() == PDF
    assert sum(1 for line in sent if line.upper().startswith(b"RETR")) == 1


def test_html_only_mail_reads_as_text_with_its_links_and_lists() -> None:
    from postroom.message.html_text import html_to_text

    text = html_to_text(
        '<p>Pay <a href="https://pay.example/inv/7">here</a>, ask <a href="mailto:ar@x.test">ar@x.test</a>.</p>'
        "<ul><li>one</li><li>two<ol><li>first</li><li>second</li></ol></li></ul>"
        "<script>alert(1)</script><p>end</p>"
    )
    assert text == (
        "Pay here (https://pay.example/inv/7), ask ar@x.test.\n\n- one\n- two\n  1. first\n  2. second\n\nend"
    )
