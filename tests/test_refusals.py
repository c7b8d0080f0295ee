"""A line break where one line belongs is refused before anything is sent, naming the field; mail that
carries one is answered anyway (its text is cleaned, not refused)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import postroom
from postroom import ConfigError, Runtime
from postroom.testing import InMemory, MemoryServer
from tests.mail_samples import raw

LINE_BREAKS = ["\r", "\n", "\0", "\u2028", "\x85"]


@pytest.fixture
def bot() -> Iterator[tuple[Runtime, MemoryServer]]:
    name = f"refuse-{uuid.uuid4().hex[:8]}"
    server = MemoryServer.named(name)
    with Runtime() as runtime:
        runtime.connect("bot", InMemory(server=name))
        yield runtime, server
    MemoryServer.forget(name)


@pytest.mark.parametrize("char", LINE_BREAKS, ids=repr)
def test_a_subject_or_attachment_name_with_a_line_break_sends_nothing(
    bot: tuple[Runtime, MemoryServer], tmp_path: Path, char: str
) -> None:
    _runtime, server = bot
    with pytest.raises(ConfigError, match="nothing was sent") as raised:
        postroom.send("bot", sender="bot@example.test", to="a@example.test", subject=f"one{char}two", body="x")
    assert raised.value.field == "subject"
    if char != "\0":  # a file system takes no NUL in a name
        attachment = tmp_path / f"report{char}.pdf"
        attachment.write_bytes(b"%PDF")
        with pytest.raises(ConfigError) as raised:
            postroom.send(
                "bot", sender="bot@example.test", to="a@example.test", subject="ok", body="x", attachments=[attachment]
            )
        assert raised.value.field == "attachments"
    assert server.sent == []


@pytest.mark.parametrize("char", LINE_BREAKS, ids=repr)
def test_a_folder_name_with_a_line_break_is_refused_by_every_action(
    bot: tuple[Runtime, MemoryServer], char: str
) -> None:
    _runtime, server = bot
    server.deliver(raw("From: a@example.test\nSubject: hi\n\nbody\n"))
    name = f"Done{char}x"
    for action in (
        lambda: postroom.move("bot", list(postroom.messages("bot")), name),
        lambda: postroom.create_folder("bot", name),
        lambda: list(postroom.messages("bot", name)),
        lambda: postroom.folders("bot", name),
    ):
        with pytest.raises(ConfigError, match="line break or NUL"):
            action()
    assert [m.folder for m in postroom.messages("bot")] == ["INBOX"]  # nothing moved


def test_a_reply_to_mail_with_line_breaks_in_its_subject_and_names_goes_out(
    bot: tuple[Runtime, MemoryServer],
) -> None:
    _runtime, server = bot
    server.deliver(raw("From: =?utf-8?q?Eve=C2=85Evil?= <eve@example.test>\nSubject: =?utf-8?q?a=E2=80=A8b?=\n\nhi\n"))
    message = next(postroom.messages("bot"))
    postroom.reply("bot", message, body="ack", sender="bot@example.test")
    assert len(server.sent) == 1
    assert b"Subject: Re: a b" in server.sent[0]
