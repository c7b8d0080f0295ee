"""Drafts and storing messages as they are (#13: "drafts/append, which imap-tools and exchangelib offer"):
on IMAP (the real Dovecot), EWS and Outlook (their stand-ins), through the API and the CLI."""

from __future__ import annotations

import email
import email.policy
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import postroom
from postroom import ConfigError, Outlook, UnsupportedError
from postroom.cli.main import cli
from tests.conftest import PASSWORD
from tests.mail_samples import PDF, simple
from tests.oauth_modes import client_credentials, variables
from tests.servers.dovecot import Dovecot
from tests.servers.ews import EwsServerUnderTest
from tests.servers.graph import GraphStandIn
from tests.servers.oauth import CONFIDENTIAL_CLIENT, AuthorizationServerUnderTest
from tests.test_ews import EWS_VARIABLES, ews_config


def test_a_draft_on_imap_is_flagged_draft_in_the_drafts_folder_with_its_bcc(
    imap: postroom.Session, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(PDF)
    kept = postroom.save_draft(
        imap, to="a@example.test", bcc="hidden@example.test", subject="for review", body="draft", attachments=[report]
    )
    assert kept.folder == "Drafts" and kept.recipients == ("a@example.test", "hidden@example.test")
    (stored,) = postroom.messages(imap, folder="Drafts")
    assert stored.subject == "for review" and {"\\Seen", "\\Draft"} <= set(stored.flags or ())
    assert stored.message_id == kept.message_id and stored.bcc and stored.attachment_names == ["report.pdf"]
    again = postroom.save_draft(imap, to="b@example.test", subject="second", body="x")
    assert again.folder == "Drafts"  # found, not made again
    assert len(list(postroom.messages(imap, folder="Drafts"))) == 2


def test_append_stores_an_eml_as_it_is_once_and_refuses_what_is_not_one(
    imap: postroom.Session, dovecot: Dovecot, mailbox_user: str, tmp_path: Path
) -> None:
    raw = simple("restored from backup", attachments={"a.pdf": PDF})
    eml = tmp_path / "backup.eml"
    eml.write_bytes(raw)
    postroom.create_folder(imap, "Restored")
    message_id = postroom.append(imap, "Restored", eml, seen=False)
    (stored,) = postroom.messages(imap, folder="Restored")
    assert stored.message_id == message_id and stored.seen is False
    assert stored.raw() == raw  # byte for byte
    with pytest.raises(ConfigError, match="is not a file") as missing:
        postroom.append(imap, "Restored", tmp_path / "nope.eml")
    assert missing.value.field == "message"
    with pytest.raises(ConfigError, match="TRYCREATE|no folder|does not exist|create it") as nowhere:
        postroom.append(imap, "Nowhere", raw)
    assert nowhere.value.field == "folder"


def test_drafts_on_ews_and_outlook_land_in_drafts_and_are_not_sent(
    ews_server: EwsServerUnderTest, graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    with postroom.connect("e", ews_config(ews_server), variables=EWS_VARIABLES) as session:
        kept = postroom.save_draft(session, to="a@example.test", subject="ews draft", body="x")
        assert kept.folder == "Drafts" and [m.subject for m in postroom.messages(session, folder="Drafts")] == [
            "ews draft"
        ]
    assert ews_server.outbox == []
    graph.app_scope[CONFIDENTIAL_CLIENT] = {"bot@example.test"}
    config = Outlook(
        mailbox="bot@example.test",
        auth=client_credentials(authorization_server),
        graph_url=graph.url,
        ca_file=graph.ca_file,
    )
    with postroom.connect("o", config, variables=variables("bot@example.test", CONFIDENTIAL_CLIENT)) as session:
        kept = postroom.save_draft(session, to="a@example.test", bcc="h@example.test", subject="graph draft", body="y")
        assert kept.folder == "Drafts"
        (stored,) = graph.in_folder("bot@example.test", "drafts")
        assert stored.subject == "graph draft" and stored.bcc == [("", "h@example.test")]
        with pytest.raises(UnsupportedError, match="storing messages is not possible on Outlook"):
            postroom.append(session, "INBOX", simple("x"))  # Graph keeps a MIME message only as a draft
    assert graph.outbox == []


def test_the_cli_saves_a_draft_and_appends_an_eml(dovecot: Dovecot, mailbox_user: str, tmp_path: Path) -> None:
    assert dovecot.certs is not None
    runner = CliRunner()
    base = ["--var", f"U={mailbox_user}", "--var", f"P={PASSWORD}"]
    made = runner.invoke(
        cli,
        [*base, "connect", "mine", "--host", "localhost", "--port", str(dovecot.ports["imaps"]),
         "--ca-file", str(dovecot.certs.ca_file), "--username", "var:U", "--password", "var:P"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    drafted = runner.invoke(
        cli,
        [
            *base,
            "send",
            "-s",
            "mine",
            "--to",
            "a@example.test",
            "--subject",
            "cli draft",
            "--body",
            "b",
            "--draft",
            "--json",
        ],
    )
    assert drafted.exit_code == 0, drafted.output
    assert json.loads(drafted.stdout)["folder"] == "Drafts"
    eml = tmp_path / "one.eml"
    eml.write_bytes(simple("imported"))
    appended = runner.invoke(cli, [*base, "append", "-s", "mine", str(eml), "--folder", "INBOX", "--json"])
    assert appended.exit_code == 0, appended.output
    listed = runner.invoke(cli, [*base, "list", "-s", "mine", "--json"])
    assert [m["subject"] for m in json.loads(listed.stdout)["messages"]] == ["imported"]
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert json.loads(appended.stdout)["message_id"] == parsed["Message-ID"]
