"""EWS: every email action through exchangelib against the EWS stand-in (tests/servers/ews.py).

The stand-in is a protocol-level stand-in that speaks EWS SOAP over HTTPS, not an
Exchange server; the IMAP half of the side-by-side test runs on the real Dovecot.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import warnings
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

import postroom
from postroom import (
    AuthenticationError,
    Basic,
    CertificateError,
    ConfigError,
    Ews,
    EwsRetirementWarning,
    Insecure,
    MailServerError,
    Ntlm,
    OAuth2ROPC,
    Outlook,
    Variable,
)
from postroom.sandbox.demo import invoice_bot
from postroom.sandbox.seed import sample_mailbox
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import PDF, simple
from tests.oauth_modes import client_credentials, implicit, pkce, sign_in, variables
from tests.servers.dovecot import Dovecot
from tests.servers.ews import EwsServerUnderTest
from tests.servers.graph import GraphStandIn
from tests.servers.oauth import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, AuthorizationServerUnderTest
from tests.servers.smtp import SmtpServerUnderTest

USER = "bot@example.test"
EWS_VARIABLES = {"EWS_USER": USER, "EWS_PASSWORD": PASSWORD}


def ews_config(server: EwsServerUnderTest, **changes: object) -> Ews:
    options: dict[str, object] = {
        "url": server.url,
        "ca_file": server.ca_file,
        "auth": Basic(username=Variable("EWS_USER"), password=Variable("EWS_PASSWORD")),
        "version": "Exchange2016",
    }
    options.update(changes)
    return Ews(**options)  # type: ignore[arg-type]


@pytest.fixture
def ews(ews_server: EwsServerUnderTest) -> Iterator[postroom.Session]:
    session = postroom.connect("e", ews_config(ews_server), variables=EWS_VARIABLES)
    yield session
    session.close()


def mail(
    subject: str,
    *,
    sender: str = "Alice <alice@example.test>",
    body: str = "hello",
    files: dict[str, bytes] | None = None,
    html: str | None = None,
) -> bytes:
    return simple(subject, sender, body, attachments=files, html=html)


# -- the same bot on IMAP and on EWS -------------------------------------------------------------


def test_the_invoice_bot_runs_unchanged_on_imap_ews_and_outlook(
    tmp_path: Path,
    dovecot: Dovecot,
    mailbox_user: str,
    smtp: SmtpServerUnderTest,
    ews_server: EwsServerUnderTest,
    graph: GraphStandIn,
    authorization_server: AuthorizationServerUnderTest,
) -> None:
    sample = sample_mailbox(mailbox_user)
    for folder, raw, seen in sample:
        dovecot.deliver(mailbox_user, raw, folder=folder, seen=seen)
        item = ews_server.deliver(raw, "Processed" if folder == "Processed" else "Inbox")
        item.is_read = seen
        graph.deliver(mailbox_user, raw, "Processed" if folder == "Processed" else "Inbox", seen=seen)
    graph.app_scope[CONFIDENTIAL_CLIENT] = {mailbox_user}
    on_graph = Outlook(
        mailbox=mailbox_user, auth=client_credentials(authorization_server), graph_url=graph.url, ca_file=graph.ca_file
    )
    imap_config = server_config(dovecot, smtp_host="localhost", smtp_port=smtp.starttls_port, smtp_security="starttls")
    imap_variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    runs = {}
    for name, config, values in (
        ("imap", imap_config, imap_variables),
        ("ews", ews_config(ews_server), {"EWS_USER": mailbox_user, "EWS_PASSWORD": PASSWORD}),
        ("outlook", on_graph, variables(mailbox_user, CONFIDENTIAL_CLIENT)),
    ):
        if name == "ews":
            ews_server.users[mailbox_user] = PASSWORD
        out = tmp_path / name
        with postroom.connect(name, config, variables=values) as session:
            done = invoice_bot(session, out, lambda line: None)
            left = [m.subject for m in postroom.messages(session, order="oldest")]
            processed = sorted(m.subject for m in postroom.messages(session, folder="Processed"))
        files = {Path(f).name: Path(f).read_bytes() for row in done for f in row["files"]}
        runs[name] = ([(r["subject"], r["from"], r["replied_to"], r["moved"]) for r in done], files, left, processed)

    assert runs["imap"] == runs["ews"] == runs["outlook"]
    handled, files, left, processed = runs["ews"]
    assert len(handled) == 4 and all(moved for *_, moved in handled)
    assert set(files) and all(data.startswith(b"%PDF") for data in files.values())
    assert not any(subject.startswith("Invoice") and "(paid)" not in subject for subject in left)
    # the replies went through Exchange, threaded on the originals
    replies = [email.message_from_bytes(raw, policy=email.policy.default) for raw in ews_server.outbox]
    assert sorted(r["To"].addresses[0].addr_spec for r in replies) == sorted(row[2][0] for row in handled)
    assert all(str(r["Subject"]).startswith("Re: Invoice") and r["In-Reply-To"] for r in replies)
    assert len(ews_server.in_folder("Sent Items")) == 0  # the demo bot does not keep copies
    # on Outlook the replies went through Graph's MIME sendMail, threaded the same way
    graph_replies = [email.message_from_bytes(raw, policy=email.policy.default) for raw in graph.outbox]
    assert sorted(str(r["Subject"]) for r in graph_replies) == sorted(str(r["Subject"]) for r in replies)
    assert all(r["In-Reply-To"] for r in graph_replies)


# -- XML-invalid characters ----------------------------------------------------------------------

#: One of each class: C0 controls, a lone surrogate, U+FDD0–U+FDEF, U+FFFE/U+FFFF, a non-BMP non-character.
INVALID = [
    "\x01",
    "\x08",
    "\x0b",
    "\x1f",
    "\ud800",
    "\udfff",
    "\ufdd0",
    "\ufdef",
    "\ufffe",
    "\uffff",
    "\U0001fffe",
    "\U0010ffff",
]


def test_xml_invalid_characters_never_stop_a_loop_or_an_action(
    ews: postroom.Session, ews_server: EwsServerUnderTest, tmp_path: Path
) -> None:
    for index, char in enumerate(INVALID):
        item = ews_server.deliver(
            mail(f"Invoice {index}", files={f"scan{index}.pdf": b"%PDF-1.4 " + bytes([65 + index])}),
            subject=f"Invoice {index} {char} end",
            sender=(f"Bad{char}Name", "vendor@example.test"),
            body=f"line {char} body",
        )
        item.attachments[0].name = f"scan{char}{index}.pdf"
    ews_server.deliver(mail("Clean one"))
    ews_server.folder("Processed")

    seen = []
    for message in postroom.messages(ews, subject=r"^Invoice \d+", regex=True, order="oldest"):
        saved = message.save_attachments(tmp_path / "out")
        postroom.reply(ews, message, "received")
        assert postroom.move(ews, message, "Processed")[0].ok
        seen.append(
            (message.subject, message.from_name, message.text, [s.path.name for s in saved], list(message.defects))
        )

    assert len(seen) == len(INVALID)
    for index, (subject, name, text, files, defects) in enumerate(seen):
        assert subject == f"Invoice {index} \ufffd end"
        assert name == "Bad\ufffdName"
        assert text.strip() == "line \ufffd body"
        assert files == [f"scan\ufffd{index}.pdf"]
        assert any(d.startswith("subject:") for d in defects)
        assert any(d.startswith("body:") for d in defects)
        assert any(d.startswith("attachment name:") for d in defects)
    assert len(list((tmp_path / "out").iterdir())) == len(INVALID)
    assert all(p.resolve().parent == (tmp_path / "out").resolve() for p in (tmp_path / "out").iterdir())
    assert len(ews_server.in_folder("Processed")) == len(INVALID)
    assert [m.subject for m in postroom.messages(ews)] == ["Clean one"]
    # outgoing: the replies carry the cleaned subject, nothing XML cannot carry
    for raw in ews_server.outbox:
        subject = str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])
        assert "\ufffd" in subject and not any(ch in subject for ch in INVALID)


def test_outgoing_text_is_cleaned_before_it_is_sent(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    postroom.send(ews, to="x@example.test", subject="Report \x01\x02 done", body="total \x0b 12")
    sent = email.message_from_bytes(ews_server.outbox[-1], policy=email.policy.default)
    assert str(sent["Subject"]) == "Report \ufffd\ufffd done"
    assert sent.get_content().strip() == "total \ufffd 12"


# -- filters, order, folders ----------------------------------------------------------------------


def test_filters_run_on_ews_as_on_imap(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    base = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for day, (subject, sender, read) in enumerate(
        [
            ("Invoice 7 from Acme", "Acme <billing@acme.test>", False),
            ("invoice 8 from Globex", "Globex <ap@globex.test>", True),
            ("Newsletter", "News <news@acme.test>", False),
            ("Ticket #12", "Help <help@desk.test>", False),
        ]
    ):
        item = ews_server.deliver(mail(subject, sender=sender), received=base + dt.timedelta(days=day))
        item.is_read = read
    ews_server.deliver(mail("Invoice 9 in a project"), "Inbox/Project1", received=base + dt.timedelta(days=9))

    def subjects(**filters: object) -> list[str]:
        return [m.subject for m in postroom.messages(ews, **filters)]  # type: ignore[arg-type]

    assert subjects() == ["Ticket #12", "Newsletter", "invoice 8 from Globex", "Invoice 7 from Acme"]
    assert subjects(order="oldest", limit=2) == ["Invoice 7 from Acme", "invoice 8 from Globex"]
    assert subjects(status="unread", subject="invoice") == ["Invoice 7 from Acme"]
    assert subjects(subject="invoice", case_sensitive=True) == ["invoice 8 from Globex"]
    assert subjects(subject=r"^[Ii]nvoice \d+ from", regex=True) == ["invoice 8 from Globex", "Invoice 7 from Acme"]
    assert subjects(sender=["acme.test", "desk.test"]) == ["Ticket #12", "Newsletter", "Invoice 7 from Acme"]
    assert subjects(sender=[r"^Help <"], regex=True) == ["Ticket #12"]
    assert subjects(since=dt.date(2026, 11, 2), before=dt.date(2026, 11, 4)) == ["Newsletter", "invoice 8 from Globex"]
    # folder by folder, as on IMAP
    assert subjects(subject="invoice", include_subfolders=True) == [
        "invoice 8 from Globex",
        "Invoice 7 from Acme",
        "Invoice 9 in a project",
    ]
    assert subjects(folder="inbox/proj*") == ["Invoice 9 in a project"]
    names = [f.name for f in postroom.folders(ews)]
    assert "INBOX" in names and "INBOX/Project1" in names and "Sent Items" in names
    with pytest.raises(postroom.ProtocolError, match="no folder 'Nowhere'"):
        list(postroom.messages(ews, folder="Nowhere"))


def test_reading_never_marks_read_and_marks_change_status(
    ews: postroom.Session, ews_server: EwsServerUnderTest
) -> None:
    first, second = ews_server.deliver(mail("one")), ews_server.deliver(mail("two"))
    messages = list(postroom.messages(ews, order="oldest"))
    assert [m.text.strip() for m in messages] == ["hello", "hello"]
    assert not first.is_read and not second.is_read
    results = postroom.mark_read(ews, messages)
    assert [r.ok for r in results] == [True, True] and first.is_read and second.is_read
    assert [m.subject for m in postroom.messages(ews, status="unread")] == []
    postroom.mark_unread(ews, messages[0])
    assert [m.subject for m in postroom.messages(ews, status="unread")] == ["one"]


def test_flagged_for_follow_up_shows_as_flagged(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    ews_server.deliver(mail("follow up"), flag_status=2)
    ews_server.deliver(mail("done"), flag_status=1)  # completed: no longer flagged, as Outlook shows it
    ews_server.deliver(mail("plain"))
    found = {m.subject: (m.flagged, m.properties()["flagged"]) for m in postroom.messages(ews)}
    assert found == {"follow up": (True, True), "done": (False, False), "plain": (False, False)}


def test_flag_unflag_and_categories_as_keywords_on_ews(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    stored = ews_server.deliver(mail("tag me"))
    stored.categories = ["Existing"]
    message = next(iter(postroom.messages(ews)))
    assert message.flags == frozenset({"Existing"})
    assert postroom.flag(ews, message)[0].ok and stored.flag_status == 2
    assert postroom.add_flags(ews, message, "Invoice", "Paid")[0].ok
    assert postroom.remove_flags(ews, message, "Paid")[0].ok
    assert stored.categories == ["Existing", "Invoice"]  # the ones it had are kept
    again = next(iter(postroom.messages(ews)))
    assert again.flagged and again.flags == frozenset({"\\Flagged", "Existing", "Invoice"})
    assert postroom.unflag(ews, again)[0].ok and stored.flag_status is None
    with pytest.raises(postroom.UnsupportedError, match="Answered"):
        postroom.add_flags(ews, again, "\\Answered")


def test_bulk_calls_give_one_result_per_message_in_order(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    items = [ews_server.deliver(mail(f"m{i}")) for i in range(3)]
    ews_server.folder("Archive")
    messages = list(postroom.messages(ews, order="oldest"))
    del ews_server.items[items[1].id]  # gone before the move (another client deleted it)
    results = postroom.move(ews, messages, "Archive")
    assert [r.ok for r in results] == [True, False, True]
    assert "ErrorItemNotFound" in results[1].detail
    assert results[0].new_key is not None and results[0].new_key.folder == "Archive"
    assert sorted(i.subject for i in ews_server.in_folder("Archive")) == ["m0", "m2"]
    moved = list(postroom.messages(ews, folder="Archive", order="oldest"))
    assert [r.ok for r in postroom.delete(ews, moved)] == [True, True]
    assert ews_server.in_folder("Archive") == []


def test_save_email_is_the_mime_content_and_attachments_stream(
    ews: postroom.Session, ews_server: EwsServerUnderTest, tmp_path: Path
) -> None:
    raw = mail("with files", files={"../../etc/passwd": b"%PDF-1.4 x", "report.pdf": b"%PDF-1.4 " + b"r" * 200_000})
    ews_server.deliver(raw)
    message = next(iter(postroom.messages(ews)))
    assert message.attachment_names == ["../../etc/passwd", "report.pdf"]  # as sent; made safe when saved
    saved = message.save_attachments(tmp_path / "files")
    assert sorted(p.path.name for p in saved) == ["passwd", "report.pdf"]
    assert (tmp_path / "files" / "report.pdf").stat().st_size == len(b"%PDF-1.4 ") + 200_000
    eml = message.save(tmp_path / "copy.eml")
    assert Path(eml).read_bytes() == raw
    assert "GetAttachment" in ews_server.operations


def test_an_attached_email_is_saved_as_eml_with_its_own_attachments_on_request(
    ews: postroom.Session, ews_server: EwsServerUnderTest, tmp_path: Path
) -> None:
    inner = mail("Invoice 88 (original)", files={"invoice-88.pdf": b"%PDF-1.4 eighty-eight"})
    outer = EmailMessage()
    outer["From"], outer["To"], outer["Subject"] = "Bob <bob@example.test>", USER, "Fwd: Invoice 88"
    outer.set_content("see the attached mail")
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))  # an ItemAttachment
    ews_server.deliver(outer.as_bytes())
    message = next(iter(postroom.messages(ews)))
    assert message.attachment_names == ["Invoice 88 (original)"]  # Exchange names it by its subject
    saved = message.save_attachments(tmp_path / "plain")
    eml = (tmp_path / "plain" / "Invoice 88 (original).eml").read_bytes()
    assert [p.path.name for p in saved] == ["Invoice 88 (original).eml"]
    assert email.message_from_bytes(eml, policy=email.policy.default)["Subject"] == "Invoice 88 (original)"
    nested = message.save_attachments(tmp_path / "nested", include_nested=True)
    assert sorted(p.path.name for p in nested) == ["Invoice 88 (original).eml", "invoice-88.pdf"]
    assert (tmp_path / "nested" / "invoice-88.pdf").read_bytes() == b"%PDF-1.4 eighty-eight"


def test_send_with_bcc_and_a_copy_in_sent_items(
    ews: postroom.Session, ews_server: EwsServerUnderTest, tmp_path: Path
) -> None:
    attachment = tmp_path / "a.txt"
    attachment.write_text("attached")
    receipt = postroom.send(
        ews,
        to="a@example.test; b@example.test",
        cc="c@example.test",
        bcc="hidden@example.test",
        subject="Report",
        body="see attached",
        attachments=[attachment],
        save_to_sent=True,
    )
    assert sorted(receipt.recipients) == ["a@example.test", "b@example.test", "c@example.test", "hidden@example.test"]
    sent = email.message_from_bytes(ews_server.outbox[-1], policy=email.policy.default)
    assert str(sent["Bcc"]) == "hidden@example.test"  # Exchange reads Bcc from the MIME and strips it
    assert str(sent["From"]) == USER
    assert [i.subject for i in ews_server.in_folder("Sent Items")] == ["Report"]
    with pytest.raises(ConfigError, match="save_to_sent"):
        postroom.send(ews, to="a@example.test", subject="x", body="y", save_to_sent="Elsewhere")


# -- connecting: auth, version, TLS, throttling ----------------------------------------------------


def test_wrong_password_names_the_fix_and_never_the_secret(ews_server: EwsServerUnderTest) -> None:
    with pytest.raises(AuthenticationError) as caught:
        postroom.connect("bad", ews_config(ews_server), variables={"EWS_USER": USER, "EWS_PASSWORD": "Wr0ng-Secret"})
    assert "username and password" in str(caught.value) and "Wr0ng-Secret" not in str(caught.value)


def test_ntlm_with_a_domain(ews_server: EwsServerUnderTest) -> None:
    config = ews_config(
        ews_server, auth=Ntlm(username="bot", password=Variable("EWS_PASSWORD")), domain="CORP", mailbox=USER
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", postroom.InsecureSecretWarning)
        with postroom.connect("ntlm", config, variables=EWS_VARIABLES) as session:
            assert [f.name for f in postroom.folders(session) if f.name == "INBOX"] == ["INBOX"]
    assert "NTLM" in ews_server.schemes and "Basic" not in ews_server.schemes
    wrong = ews_config(
        ews_server, auth=Ntlm(username="bot", password=Variable("EWS_PASSWORD")), domain="CORP", mailbox=USER
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", postroom.InsecureSecretWarning)
        with pytest.raises(AuthenticationError, match="domain"):
            postroom.connect("ntlm2", wrong, variables={"EWS_PASSWORD": "nope"})


def test_a_given_version_skips_detection(ews_server: EwsServerUnderTest) -> None:
    with postroom.connect("v", ews_config(ews_server, version="Exchange Server 2013"), variables=EWS_VARIABLES):
        pass
    assert "ConvertId" not in ews_server.operations
    assert set(ews_server.versions) == {"Exchange2013"}
    ews_server.operations.clear()
    with postroom.connect("v", ews_config(ews_server, version=None), variables=EWS_VARIABLES):
        pass
    assert ews_server.operations[0] == "ConvertId"  # detection: one round trip first


def test_untrusted_certificate_is_refused(ews_server: EwsServerUnderTest) -> None:
    with pytest.raises(CertificateError, match="not trusted"):
        postroom.connect("tls", ews_config(ews_server, ca_file=None), variables=EWS_VARIABLES)


def test_two_sessions_to_one_url_keep_their_own_tls_settings(ews_server: EwsServerUnderTest, tmp_path: Path) -> None:
    """Each connection's HTTP adapter is its own: a second session to the same URL with another CA (one that
    did not sign the server's certificate) fails, and does not change what the first one trusts."""
    from postroom.sandbox.certs import make_certificates

    ews_server.deliver(mail("still trusted"))
    other_ca = make_certificates(tmp_path / "other").ca_file
    with postroom.connect("right", ews_config(ews_server), variables=EWS_VARIABLES) as right:
        assert [m.subject for m in postroom.messages(right)] == ["still trusted"]
        other_user = Basic(username=Insecure("other@example.test"), password=Insecure(PASSWORD))
        with pytest.warns(postroom.InsecureSecretWarning), pytest.raises(CertificateError, match="not trusted"):
            postroom.connect("wrong", ews_config(ews_server, ca_file=other_ca, auth=other_user))
        assert [m.subject for m in postroom.messages(right)] == ["still trusted"]  # its own CA, still


def test_throttling_is_waited_out_or_reported(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    ews_server.deliver(mail("busy day"))
    ews_server.busy = 2
    assert [m.subject for m in postroom.messages(ews)] == ["busy day"]
    assert ews_server.busy == 0
    impatient = postroom.connect("fast", ews_config(ews_server, max_throttle_wait=0), variables=EWS_VARIABLES)
    ews_server.busy = 1
    with pytest.raises(MailServerError, match="throttl"):
        list(postroom.messages(impatient))
    impatient.close()


def test_test_connection_reports_version_mailbox_and_folders(ews_server: EwsServerUnderTest) -> None:
    tested = postroom.test_connection(ews_config(ews_server, version=None), variables=EWS_VARIABLES)
    assert tested.report.protocol == "ews"
    assert "15.1" in tested.report.greeting and "Exchange2016" in tested.report.greeting
    assert tested.report.folder_count is not None and tested.report.folder_count >= 5
    assert tested.username == USER and tested.round_trip_ms >= 0


# -- configuration ---------------------------------------------------------------------------------


def test_exchange_online_warns_of_the_ews_retirement_and_gcc_high_has_its_own_host() -> None:
    auth = Basic(username=Variable("u"), password=Variable("p"))
    with pytest.warns(EwsRetirementWarning, match="1 Apr 2027"):
        online = Ews(provider="microsoft365", auth=auth)
    assert online.url == "https://outlook.office365.com/EWS/Exchange.asmx"
    with pytest.warns(EwsRetirementWarning, match="Outlook"):
        gcc = Ews(provider="microsoft365", azure_cloud="gcc-high", auth=auth)
    assert gcc.url == "https://outlook.office365.us/EWS/Exchange.asmx"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_premises = Ews(host="Mail.Corp.Example", auth=auth)
    assert on_premises.url == "https://mail.corp.example/EWS/Exchange.asmx"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"url": "http://mail.example.com/EWS/Exchange.asmx"}, "url", "https"),
        ({"url": "mail.example.com"}, "url", "not an EWS URL"),
        ({"version": "Exchange2099"}, "version", "Exchange2013"),
        ({"domain": "corp\\x"}, "domain", "Windows domain"),
        ({"mailbox": "shared"}, "mailbox", "email address"),
        ({"provider": "gmail"}, "provider", "no EWS"),
        ({"access_type": "owner"}, "access_type", "delegate"),
    ],
)
def test_bad_settings_name_the_field(changes: dict[str, object], field: str, words: str) -> None:
    options: dict[str, object] = {
        "host": "mail.example.com",
        "auth": Basic(username=Variable("u"), password=Variable("p")),
    }
    options.update(changes)
    with pytest.raises(ConfigError) as caught:
        Ews(**options)  # type: ignore[arg-type]
    assert caught.value.field == field and words in str(caught.value)


# -- the CLI ---------------------------------------------------------------------------------------


def cli_json(*args: str) -> dict[str, Any]:
    """Run a postroom command with ``--json``; the bot's variables hold the user and the password."""
    from click.testing import CliRunner

    from postroom.cli.main import cli

    variables = ["--var", f"USER={USER}", "--var", f"PW={PASSWORD}"]
    result = CliRunner().invoke(cli, [*variables, *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def test_cli_connect_test_connection_and_actions_on_ews(ews_server: EwsServerUnderTest, tmp_path: Path) -> None:
    ews_server.deliver(mail("Invoice 5 from Acme", files={"inv-5.pdf": b"%PDF-1.4 five"}))
    ews_server.deliver(mail("Lunch?"))
    ews_server.folder("Processed")
    profile = cli_json(
        "connect",
        "exchange",
        "--protocol",
        "ews",
        "--url",
        ews_server.url,
        "--ca-file",
        str(ews_server.ca_file),
        "--username",
        "var:USER",
        "--password",
        "var:PW",
        "--exchange-version",
        "Exchange Server 2013",
    )
    assert profile["settings"]["protocol"] == "ews" and profile["settings"]["version"] == "Exchange2013"
    assert profile["auth"] == {"mode": "basic", "username": "var:USER", "password": "var:PW"}

    tested = cli_json("test-connection", "exchange")
    assert tested["protocol"] == "ews" and tested["folder_count"] == 6 and tested["username"] == USER
    listed = cli_json("list", "--session", "exchange")
    assert [m["subject"] for m in listed["messages"]] == ["Lunch?", "Invoice 5 from Acme"]
    cli_json("save-attachments", "--session", "exchange", str(tmp_path / "out"), "--subject", "invoice")
    assert (tmp_path / "out" / "inv-5.pdf").read_bytes() == b"%PDF-1.4 five"
    moved = cli_json("move", "--session", "exchange", "--to", "Processed", "--subject", "invoice")
    assert [r["ok"] for r in moved["results"]] == [True]
    assert [i.subject for i in ews_server.in_folder("Processed")] == ["Invoice 5 from Acme"]


def test_cli_refuses_options_of_the_other_protocol() -> None:
    from click.testing import CliRunner

    from postroom.cli.main import cli

    ews_with_port = CliRunner().invoke(
        cli,
        [
            "connect",
            "x",
            "--protocol",
            "ews",
            "--host",
            "mail.example.com",
            "--port",
            "993",
            "--username",
            "env:U",
            "--password",
            "env:P",
        ],
    )
    assert ews_with_port.exit_code == 3 and "--port does not apply to EWS" in ews_with_port.output
    imap_with_ntlm = CliRunner().invoke(
        cli,
        ["connect", "x", "--host", "mail.example.com", "--auth", "ntlm", "--username", "env:U", "--password", "env:P"],
    )
    assert (
        imap_with_ntlm.exit_code == 3
        and "ntlm is not a way to log in to IMAP — use it with --protocol ews" in imap_with_ntlm.output
    )


# -- OAuth2 -----------------------------------------------------------------------------------------


def test_client_credentials_open_the_mailbox_by_impersonation(
    ews_server: EwsServerUnderTest, authorization_server: AuthorizationServerUnderTest
) -> None:
    authorization_server.app_mailboxes[CONFIDENTIAL_CLIENT] = USER
    ews_server.deliver(mail("for the daemon"))
    config = ews_config(ews_server, auth=client_credentials(authorization_server))
    assert config.effective_access_type == "impersonation"
    names = variables(USER, CONFIDENTIAL_CLIENT)
    with postroom.connect("daemon", config, variables=names) as session:
        assert [m.subject for m in postroom.messages(session)] == ["for the daemon"]
    assert set(ews_server.schemes) == {"Bearer"}
    token = [t for t in authorization_server.tokens.values() if t.client_id == CONFIDENTIAL_CLIENT][-1]
    assert token.scope == "https://outlook.office365.com/.default"


def test_pkce_sign_in_for_ews_and_a_revoked_token_renewed_mid_loop(
    ews_server: EwsServerUnderTest, authorization_server: AuthorizationServerUnderTest
) -> None:
    for number in range(3):
        ews_server.deliver(mail(f"note {number}"))
    config = ews_config(ews_server, auth=pkce(authorization_server))
    names = variables(USER)
    refreshes = authorization_server.count("refresh_token")
    sign_in(authorization_server, config.auth, USER)  # type: ignore[arg-type]  # the mode bound to EWS
    issued = [t for t in authorization_server.tokens.values() if t.user == USER and t.client_id == PUBLIC_CLIENT]
    assert issued[-1].scope.split()[0] == "https://outlook.office365.com/EWS.AccessAsUser.All"
    with postroom.connect("me", config, variables=names) as session:
        for message in postroom.messages(session, order="oldest"):
            if message.subject == "note 1":
                assert authorization_server.revoke_access_tokens(USER) >= 1  # an admin revokes the token
            assert postroom.mark_read(session, message)[0].ok  # refreshed once, the loop carried on
    assert all(item.is_read for item in ews_server.items.values())
    assert authorization_server.count("refresh_token") == refreshes + 1


def test_ropc_gets_a_token_with_the_password_and_warns(
    ews_server: EwsServerUnderTest, authorization_server: AuthorizationServerUnderTest
) -> None:
    from postroom.auth.oauth import RopcWarning
    from tests.servers.oauth import USER_PASSWORD

    ews_server.deliver(mail("legacy set-up"))
    with pytest.warns(RopcWarning, match="cannot do MFA"):
        mode = OAuth2ROPC(
            client_id=Variable("APP"),
            username=Variable("EWS_USER"),
            password=Variable("EWS_PASSWORD"),
            authority=authorization_server.authority,
            ca_file=str(authorization_server.ca_file),
        )
    config = ews_config(ews_server, auth=mode)
    before = authorization_server.count("password")
    names = {"APP": PUBLIC_CLIENT, "EWS_USER": USER, "EWS_PASSWORD": USER_PASSWORD}
    with postroom.connect("ropc", config, variables=names) as session:
        assert [m.subject for m in postroom.messages(session)] == ["legacy set-up"]
    with postroom.connect("ropc", config, variables=names):  # the token is cached in the vault
        pass
    assert authorization_server.count("password") == before + 1
    issued = [t for t in authorization_server.tokens.values() if t.user == USER and t.client_id == PUBLIC_CLIENT]
    assert issued[-1].scope.split()[0] == "https://outlook.office365.com/EWS.AccessAsUser.All"
    assert set(ews_server.schemes) == {"Bearer"}
    mode = mode.replace(token_name="ropc-wrong-password")  # a fresh vault entry: no cached token
    with pytest.raises(postroom.OAuthError) as refused:
        postroom.connect("ropc2", ews_config(ews_server, auth=mode), variables=names | {"EWS_PASSWORD": "not-it"})
    assert "not-it" not in str(refused.value)
    assert "check the username and password" in str(refused.value)


def test_implicit_sign_in_relays_the_token_from_the_fragment_and_cannot_refresh_it(
    ews_server: EwsServerUnderTest, authorization_server: AuthorizationServerUnderTest
) -> None:
    from postroom.auth.oauth import ImplicitGrantWarning
    from postroom.auth.oauth import VaultTokenStore as TokenStore
    from postroom.credentials import CredentialVault

    ews_server.deliver(mail("via implicit"))
    with pytest.warns(ImplicitGrantWarning, match="cannot refresh it"):
        config = ews_config(ews_server, auth=implicit(authorization_server))
    token_requests = sum(authorization_server.requests.values())
    player = sign_in(authorization_server, config.auth, USER)  # type: ignore[arg-type]
    assert player.landed_on is not None
    assert "access_token=" in player.landed_on.partition("#")[2]  # in the fragment, as RFC 6749 §4.2.2 says
    assert player.relay_page is not None and player.listener_status == 200
    assert "access_token" not in player.relay_page.url  # the token never travelled in a URL to the listener
    issued = [t for t in authorization_server.tokens.values() if t.user == USER and t.client_id == PUBLIC_CLIENT]
    assert issued[-1].scope == "https://outlook.office365.com/EWS.AccessAsUser.All"
    store = TokenStore(CredentialVault.default(), config.auth.token_name)  # type: ignore[attr-defined]
    record = store.load()
    assert record is not None and record.grant == "implicit" and record.refresh_token is None
    assert record.access_token.reveal() == issued[-1].access_token

    names = variables(USER)
    with postroom.connect("implicit", config, variables=names) as session:
        assert [m.subject for m in postroom.messages(session)] == ["via implicit"]
        authorization_server.revoke_access_tokens(USER)  # refused from now on: there is nothing to refresh
        with pytest.raises(postroom.ConsentRequiredError, match="refused by the mail server") as refused:
            list(postroom.messages(session))
    assert "sign in again" in (refused.value.hint or "") and "OAuth2PKCE" in (refused.value.hint or "")
    assert sum(authorization_server.requests.values()) == token_requests  # no token endpoint call, ever
    assert set(ews_server.schemes) == {"Bearer"}

    store.save(record.without_access_token())  # an hour later
    with pytest.raises(postroom.ConsentRequiredError, match="has expired and the implicit grant has no refresh"):
        postroom.connect("implicit", config, variables=names)


def test_implicit_sign_in_declined_or_forged(authorization_server: AuthorizationServerUnderTest) -> None:
    import requests

    from postroom.auth.oauth.loopback import LoopbackRedirect

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mode = implicit(authorization_server)
    with pytest.raises(postroom.AuthorizationDeniedError, match="declined \\(access_denied"):
        sign_in(authorization_server, mode, USER, decision="deny")  # the error comes back in the fragment too

    with LoopbackRedirect(
        "http://localhost:0/Callback", "right-state", answer="access_token", relay_fragment=True
    ) as ear:
        base = ear.redirect_uri
        replies: list[requests.Response] = []

        def browse() -> None:
            replies.append(requests.get(base.replace("/Callback", "/Other"), timeout=5))
            token = {"access_token": "at-x", "token_type": "Bearer"}
            replies.append(requests.post(base, data={**token, "state": "forged"}, timeout=5))
            replies.append(requests.post(base, data={"state": "right-state", "token_type": "Bearer"}, timeout=5))
            replies.append(requests.post(base, data={**token, "state": "right-state", "expires_in": "60"}, timeout=5))

        import threading

        browser = threading.Thread(target=browse)
        browser.start()
        answer = ear.wait(timeout=15)
        browser.join()
    assert [r.status_code for r in replies] == [404, 400, 400, 200]
    assert answer["access_token"] == "at-x" and ear.refused == 2


def test_exchangelib_debug_logs_never_show_the_password(
    ews_server: EwsServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    import base64
    import logging

    caplog.set_level(logging.DEBUG, logger="exchangelib")
    with postroom.connect("logged", ews_config(ews_server), variables=EWS_VARIABLES) as session:
        list(postroom.messages(session))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "'Authorization': 'Basic ***'" in text  # exchangelib logged the headers, scrubbed
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in text and PASSWORD not in text


def test_a_folder_created_after_the_listing_is_found(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    ews_server.deliver(mail("late"))
    assert "Later" not in [f.name for f in postroom.folders(ews)]
    ews_server.folder("Later")  # another client creates it
    assert postroom.move(ews, list(postroom.messages(ews)), "Later")[0].ok
    assert [i.subject for i in ews_server.in_folder("Later")] == ["late"]


def test_a_shared_mailbox_sends_as_itself_in_the_library_and_the_cli_dry_run(ews_server: EwsServerUnderTest) -> None:
    shared = "invoices@example.test"
    with postroom.connect("shared", ews_config(ews_server, mailbox=shared), variables=EWS_VARIABLES) as session:
        assert postroom.send(session, to="a@example.test", subject="s", body="b").sender == shared
    cli_json(
        "connect", "shared", "--protocol", "ews", "--url", ews_server.url, "--ca-file", str(ews_server.ca_file),
        "--username", "var:USER", "--password", "var:PW", "--mailbox", shared,
    )  # fmt: skip
    dry = cli_json(
        "send", "--session", "shared", "--to", "a@example.test", "--subject", "s", "--body", "b", "--dry-run"
    )
    assert dry["from"] == shared


def test_clone_changes_a_setting_and_derives_the_url_again() -> None:
    auth = Basic(username=Variable("u"), password=Variable("p"))
    config = Ews(host="mail.corp.example", auth=auth)
    newer = config.clone(version="exchange2013")
    assert (newer.url, newer.version, config.version) == (config.url, "Exchange2013", None)
    assert config.clone(host="ex2.corp.example").url == "https://ex2.corp.example/EWS/Exchange.asmx"
    with pytest.raises(ConfigError, match="domain"):
        config.clone(domain="a b")


def test_create_folder_on_ews_with_its_parents(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    made = postroom.create_folder(ews, "Archive/2026/December")
    assert made.name == "Archive/2026/December"
    names = {f.name for f in postroom.folders(ews)}
    assert {"Archive", "Archive/2026", "Archive/2026/December"} <= names
    assert postroom.create_folder(ews, "archive/2026").name == "Archive/2026"  # there already (any case)
    ews_server.deliver(mail("to file"))
    assert postroom.move(ews, next(postroom.messages(ews)), "Archive/2026/December")[0].status == "done"
    assert [m.subject for m in postroom.messages(ews, folder="Archive/2026/December")] == ["to file"]


def test_meeting_messages_are_emails_with_their_meeting_type(
    ews: postroom.Session, ews_server: EwsServerUnderTest
) -> None:
    from tests.test_outlook import invite

    for method, subject in (("REQUEST", "Review"), ("CANCEL", "Standup"), ("REPLY", "Accepted: Review")):
        ews_server.deliver(invite(method, subject))
    ews_server.deliver(mail("plain mail"))
    found = {m.subject: (m.item_kind, m.meeting_type) for m in postroom.messages(ews)}
    assert found == {
        "Review": ("meeting", "request"),
        "Standup": ("meeting", "cancellation"),
        "Accepted: Review": ("meeting", "accepted"),
        "plain mail": ("message", None),
    }
    review = next(m for m in postroom.messages(ews) if m.subject == "Review")
    assert postroom.mark_read(ews, review)[0].ok
    again = next(m for m in postroom.messages(ews) if m.subject == "Review")
    assert again.seen and again.properties(with_bodies=False)["item_kind"] == "meeting"


def test_a_loop_reading_bodies_asks_for_each_chunk_once(ews: postroom.Session, ews_server: EwsServerUnderTest) -> None:
    """The text body comes with each chunk's GetItem (the bench found a GetItem per message: the body's
    section was looked up as "1" where a message without attachments has it at the root)."""
    for number in range(150):
        ews_server.deliver(mail(f"m{number}", files={"a.pdf": PDF} if number % 10 == 0 else None))
    ews_server.operations.clear()
    texts = [m.text for m in postroom.messages(ews, order="oldest")]
    assert len(texts) == 150 and all(t.strip() == "hello" for t in texts)
    assert ews_server.operations.count("GetItem") <= 3  # the chunks (100 and 50), not one per message


# -- watching: pull notifications -----------------------------------------------------------------


def _state(session: postroom.Session, folder: str = "INBOX") -> str:
    return session.call(lambda mailbox: mailbox.folder_state(folder))  # type: ignore[attr-defined]


def test_a_folder_check_is_one_getevents_and_changes_when_mail_arrives_or_leaves(
    ews: postroom.Session, ews_server: EwsServerUnderTest
) -> None:
    from postroom.transports.contract import Watches

    assert ews.can(Watches)
    ews_server.deliver(mail("first"))
    first = _state(ews)  # subscribes
    assert ews_server.operations.count("Subscribe") == 1
    before = len(ews_server.operations)
    assert _state(ews) == first
    assert ews_server.operations[before:] == ["GetEvents"]  # an unchanged folder: one small request, no listing
    ews_server.deliver(mail("second"))
    arrived = _state(ews)
    assert arrived != first
    assert _state(ews) == arrived
    ews_server.deliver(mail("elsewhere"), "Inbox/Other")  # another folder's mail is not this folder's change
    assert _state(ews) == arrived
    ews_server.folder("Archive")  # (made after the folder listing: the session lists again, same subscription)
    postroom.move(ews, next(iter(postroom.messages(ews, order="oldest"))), "Archive")
    left = _state(ews)
    assert left not in (first, arrived)
    assert ews_server.operations.count("Subscribe") == 1


def test_many_events_are_read_to_the_end_and_a_lost_subscription_counts_as_a_change(
    ews: postroom.Session, ews_server: EwsServerUnderTest
) -> None:
    from tests.servers.ews import EVENTS_PER_REPLY

    first = _state(ews)
    for number in range(EVENTS_PER_REPLY + 5):  # two events each: more than two replies' worth
        ews_server.deliver(mail(f"mail {number}"))
    before = len(ews_server.operations)
    changed = _state(ews)
    assert changed != first
    assert ews_server.operations[before:] == ["GetEvents"] * 3  # MoreEvents followed, the watermark moved on
    assert _state(ews) == changed  # nothing read twice
    ews_server.forget_subscriptions()  # the mailbox server restarted: events may have been missed
    renewed = _state(ews)
    assert renewed not in (first, changed)  # so the caller lists the folder again
    assert ews_server.operations.count("Subscribe") == 2
    assert _state(ews) == renewed


def test_a_server_that_refuses_subscriptions_is_listed_at_every_check(
    ews: postroom.Session, ews_server: EwsServerUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    import time

    ews_server.refuse_subscriptions = True
    tokens = {_state(ews) for _ in range(3)}
    assert len(tokens) == 3  # a new token each time: the caller lists the folder, as without notifications
    assert ews_server.operations.count("Subscribe") == 1  # asked once, not at every check
    assert "ErrorExceededSubscriptionCount" in caplog.text
    started = time.monotonic()
    assert ews.call(lambda mailbox: mailbox.wait_for_change("INBOX", 1.0)) is True  # type: ignore[attr-defined]
    assert time.monotonic() - started >= 0.9  # waited out the interval, no pulls


def test_wait_for_change_returns_soon_after_mail_arrives_and_at_the_timeout_without(
    ews: postroom.Session, ews_server: EwsServerUnderTest
) -> None:
    import threading
    import time

    def wait(timeout: float) -> bool:
        return ews.call(lambda mailbox: mailbox.wait_for_change("INBOX", timeout))  # type: ignore[attr-defined, no-any-return]

    _state(ews)
    started = time.monotonic()
    assert wait(1.0) is False
    assert 0.9 < time.monotonic() - started < 3
    threading.Timer(0.5, lambda: ews_server.deliver(mail("now"))).start()
    started = time.monotonic()
    assert wait(30.0) is True
    assert time.monotonic() - started < 5  # within a pull interval or two of the delivery


def test_waiting_for_events_ends_soon_after_it_is_asked_to_stop(ews: postroom.Session) -> None:
    import threading
    import time

    _state(ews)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert ews.call(lambda mailbox: mailbox.wait_for_change("INBOX", 60.0, stop)) is False  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2  # not the next pull, and not the minute


def test_a_bot_watching_ews_processes_new_mail_without_listing_an_unchanged_folder(
    ews_server: EwsServerUnderTest, tmp_path: Path
) -> None:
    import time

    from postroom.runner import Bot, LocalRunner
    from postroom.runner.definition import WatchSpec
    from tests.bots import until, watching

    ews_server.deliver(mail("Invoice 1"))
    ews_server.folder("Processed")
    bot = Bot(
        "ews-watch",
        session=ews_config(ews_server),
        loop={"subject": "Invoice", "order": "oldest"},
        ledger=f"sqlite:///{tmp_path / 'ledger.db'}",
        watch=WatchSpec(reconcile=60.0),
        variables=EWS_VARIABLES,
    )
    handled: list[str] = []

    @bot.step
    def handle(message: postroom.Message, context: Any) -> None:
        handled.append(message.subject)
        context.move("Processed")

    with watching(LocalRunner(bot.definition, variables=bot.variables)):
        until(lambda: handled == ["Invoice 1"], 20, every=0.05)
        time.sleep(3)  # the watcher waits on GetEvents now
        listings = ews_server.operations.count("FindItem")
        time.sleep(3)
        assert ews_server.operations.count("FindItem") == listings  # pulls only, while nothing changes
        ews_server.deliver(mail("Invoice 2"))
        took = until(lambda: len(handled) >= 2, 15, every=0.05)
    assert handled == ["Invoice 1", "Invoice 2"]
    assert took < 6, f"a pull every few seconds should have found it (the reconcile is a minute away), took {took:.1f}s"
    assert [i.subject for i in ews_server.in_folder("Processed")] == ["Invoice 1", "Invoice 2"]
    assert ews_server.operations.count("Unsubscribe") >= 1  # the subscription ended with the watcher


def test_dates_from_ews_are_plain_datetimes_that_convert_like_any_other(
    ews: postroom.Session, ews_server: EwsServerUnderTest
) -> None:
    """exchangelib's EWSDateTime refuses the stdlib's zones in astimezone(); a bot's ledger and user code convert."""
    ews_server.deliver(mail("dated"), received=dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC))
    message = next(iter(postroom.messages(ews)))
    for value in (message.received_date, message.sent_date):
        assert type(value) is dt.datetime
        assert value.astimezone(dt.timezone(dt.timedelta(hours=2))).utcoffset() == dt.timedelta(hours=2)
    assert message.received_date == dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC)
