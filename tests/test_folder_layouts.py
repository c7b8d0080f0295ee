"""Folders are ``/``-separated whatever the server's separator is: the same suite on ``/`` and on ``.``."""

from __future__ import annotations

import hashlib

import pytest

import postroom
from postroom import ConfigError, Session
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import simple
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpServerUnderTest


@pytest.fixture(params=["/", "."], ids=["slash", "dot"])
def layout(request: pytest.FixtureRequest, dovecot: Dovecot, dovecot_with_dots: Dovecot) -> tuple[Dovecot, str]:
    """A server of each layout, and a fresh user on it."""
    server = dovecot if request.param == "/" else dovecot_with_dots
    user = "l-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12] + "@example.test"
    server.add_user(user)
    return server, user


def session_on(layout: tuple[Dovecot, str], smtp: SmtpServerUnderTest | None = None) -> Session:
    server, user = layout
    smtp_settings = (
        {"smtp_host": "localhost", "smtp_port": smtp.starttls_port, "smtp_security": "starttls"} if smtp else {}
    )
    config = server_config(server, **smtp_settings)  # type: ignore[arg-type]
    return postroom.connect("layout", config, variables={"MAILBOX_USER": user, "MAILBOX_PASSWORD": PASSWORD})


def test_folders_and_subfolder_loops_name_levels_with_a_slash(layout: tuple[Dovecot, str]) -> None:
    server, user = layout
    server.deliver(user, simple("in inbox"))
    server.deliver(user, simple("in projects"), folder="INBOX/Projects")
    server.deliver(user, simple("in alpha"), folder="INBOX/Projects/Alpha")
    session = session_on(layout)
    names = {folder.name for folder in postroom.folders(session)}
    assert {"INBOX", "INBOX/Projects", "INBOX/Projects/Alpha"} <= names
    found = {m.subject: m.folder for m in postroom.messages(session, include_subfolders=True)}
    assert found == {"in inbox": "INBOX", "in projects": "INBOX/Projects", "in alpha": "INBOX/Projects/Alpha"}
    assert [m.subject for m in postroom.messages(session, "INBOX/Projects/Alpha")] == ["in alpha"]


def test_create_and_move_into_a_nested_folder(layout: tuple[Dovecot, str]) -> None:
    server, user = layout
    server.deliver(user, simple("to file"))
    session = session_on(layout)
    created = postroom.create_folder(session, "Processed/2026")
    assert created.name == "Processed/2026"
    results = postroom.move(session, list(postroom.messages(session)), "Processed/2026")
    assert [r.status for r in results] == ["done"]
    assert [m.subject for m in postroom.messages(session, "Processed/2026")] == ["to file"]


@pytest.mark.parametrize(
    ("existing", "kept_in"),
    [("INBOX/Sent", "INBOX/Sent"), (None, "Sent")],
    ids=["a Sent folder below INBOX, unflagged", "no Sent folder: one is made before sending"],
)
def test_the_copy_in_sent_goes_to_a_sent_folder_at_any_level(
    layout: tuple[Dovecot, str], smtp: SmtpServerUnderTest, existing: str | None, kept_in: str
) -> None:
    """``INBOX/Sent`` is ``INBOX.Sent`` on the dot layout; the server flags no folder \\Sent."""
    session = session_on(layout, smtp)
    if existing:
        postroom.create_folder(session, existing)
    postroom.send(session, to="someone@example.test", subject=f"kept in {kept_in}", body="x", save_to_sent=True)
    assert [m.subject for m in postroom.messages(session, kept_in)] == [f"kept in {kept_in}"]


def test_a_named_copy_folder_that_does_not_exist_stops_the_send_before_it_goes(
    layout: tuple[Dovecot, str], smtp: SmtpServerUnderTest
) -> None:
    session = session_on(layout, smtp)
    before = len(smtp.received)
    with pytest.raises(ConfigError, match="nothing was sent") as raised:
        postroom.send(session, to="someone@example.test", subject="never sent", body="x", save_to_sent="Sant")
    assert raised.value.field == "save_to_sent"
    assert len(smtp.received) == before
