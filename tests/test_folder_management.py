"""Renaming and deleting folders, the same on IMAP (the real Dovecot, both folder delimiters), EWS and
Outlook (their stand-ins), through the API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

import postroom
from postroom import ConfigError, Session, UnsupportedError
from postroom.cli.main import cli
from postroom.config import ServerConfig
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import simple
from tests.oauth_modes import client_credentials, variables
from tests.servers.dovecot import Dovecot
from tests.servers.ews import EwsServerUnderTest
from tests.servers.graph import GraphStandIn
from tests.servers.oauth import CONFIDENTIAL_CLIENT, AuthorizationServerUnderTest
from tests.test_ews import EWS_VARIABLES, ews_config

USER = "bot@example.test"


@pytest.fixture(params=["imap", "imap-dots", "ews", "outlook"])
def session(
    request: pytest.FixtureRequest,
    mailbox_user: str,
    dovecot: Dovecot,
) -> Iterator[Session]:
    """A session with a folder Projects/2025 holding one message, and an empty folder Scratch."""
    kind = request.param
    config: ServerConfig
    if kind.startswith("imap"):
        server = request.getfixturevalue("dovecot_with_dots") if kind == "imap-dots" else dovecot
        server.add_user(mailbox_user)
        server.deliver(mailbox_user, simple("old project"), folder="Projects/2025")
        config = server_config(server)
        names = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    elif kind == "ews":
        ews: EwsServerUnderTest = request.getfixturevalue("ews_server")
        ews.deliver(simple("old project"), "Projects/2025")
        config, names = ews_config(ews), EWS_VARIABLES
    else:
        graph: GraphStandIn = request.getfixturevalue("graph")
        authority: AuthorizationServerUnderTest = request.getfixturevalue("authorization_server")
        graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
        graph.deliver(USER, simple("old project"), "Projects/2025")
        config = postroom.Outlook(
            mailbox=USER, auth=client_credentials(authority), graph_url=graph.url, ca_file=graph.ca_file
        )
        names = variables(USER, CONFIDENTIAL_CLIENT)
    with postroom.connect(f"folders-{kind}", config, variables=names) as opened:
        postroom.create_folder(opened, "Scratch")
        yield opened


def names(session: Session) -> set[str]:
    return {f.name for f in postroom.folders(session)}


def test_rename_and_move_a_folder_with_its_subfolders_and_mail(session: Session) -> None:
    renamed = postroom.rename_folder(session, "Projects", "Done")
    assert renamed.name == "Done"
    assert {"Done", "Done/2025"} <= names(session) and "Projects" not in names(session)
    assert [m.subject for m in postroom.messages(session, folder="Done/2025")] == ["old project"]
    with pytest.raises(ConfigError, match="there is a folder 'Done' already") as taken:
        postroom.rename_folder(session, "Scratch", "Done")
    assert taken.value.field == "new_name"
    with pytest.raises(ConfigError, match="inside the folder being renamed"):
        postroom.rename_folder(session, "Done", "Done/Again")
    moved = postroom.rename_folder(session, "Done/2025", "Scratch/2025")  # a new parent: it moves there
    assert moved.name == "Scratch/2025" and "Done/2025" not in names(session)
    assert [m.subject for m in postroom.messages(session, folder="Scratch/2025")] == ["old project"]
    with pytest.raises(ConfigError, match="there is no folder 'Nowhere'"):
        postroom.rename_folder(session, "Nowhere", "Else")
    with pytest.raises(ConfigError, match="inbox or a special folder"):
        postroom.rename_folder(session, "INBOX", "Old inbox")


def test_delete_refuses_a_folder_with_mail_unless_forced_and_never_the_inbox(session: Session) -> None:
    postroom.delete_folder(session, "Scratch")  # empty: gone
    assert "Scratch" not in names(session)
    with pytest.raises(ConfigError, match="holds 1 message") as full:
        postroom.delete_folder(session, "Projects")
    assert full.value.field == "force" and {"Projects", "Projects/2025"} <= names(session)
    assert postroom.delete_folder(session, "Projects", force=True, dry_run=True) == ["Projects/2025", "Projects"]
    assert "Projects/2025" in names(session)  # a dry run deletes nothing
    assert postroom.delete_folder(session, "Projects", force=True) == ["Projects/2025", "Projects"]
    assert not {"Projects", "Projects/2025"} & names(session)
    with pytest.raises(ConfigError, match="inbox or a special folder"):
        postroom.delete_folder(session, "inbox", force=True)


def test_pop3_has_no_folders_to_rename(pop3: Session) -> None:
    with pytest.raises(UnsupportedError, match="renaming folders is not possible on POP3"):
        postroom.rename_folder(pop3, "A", "B")


def test_the_cli_renames_and_deletes_with_a_dry_run_and_json(dovecot: Dovecot, mailbox_user: str) -> None:
    dovecot.deliver(mailbox_user, simple("kept"), folder="Inbox2")
    runner = CliRunner()
    base = ["--var", f"U={mailbox_user}", "--var", f"P={PASSWORD}"]
    assert dovecot.certs is not None
    made = runner.invoke(
        cli,
        [*base, "connect", "mine", "--host", "localhost", "--port", str(dovecot.ports["imaps"]),
         "--ca-file", str(dovecot.certs.ca_file), "--username", "var:U", "--password", "var:P"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    renamed = runner.invoke(cli, [*base, "rename-folder", "-s", "mine", "Inbox2", "Kept", "--json"])
    assert renamed.exit_code == 0, renamed.output
    assert json.loads(renamed.stdout) == {"ok": True, "folder": "Inbox2", "renamed_to": "Kept"}
    refused = runner.invoke(cli, [*base, "delete-folder", "-s", "mine", "Kept"])
    assert refused.exit_code == 3 and "--force" in refused.output
    dry = runner.invoke(cli, [*base, "delete-folder", "-s", "mine", "Kept", "--force", "--dry-run", "--json"])
    assert json.loads(dry.stdout) == {"ok": True, "dry_run": True, "would_delete": ["Kept"]}
    gone = runner.invoke(cli, [*base, "delete-folder", "-s", "mine", "Kept", "--force"])
    assert gone.exit_code == 0 and "deleted: Kept" in gone.output
