"""Outlook (Microsoft Graph): every email action against the Graph stand-in (tests/servers/graph.py).

The stand-in is a loopback server that speaks Graph's documented wire format, not Microsoft
Graph; its tokens come from the real test authorization server (Authlib) and are checked there
by introspection. The IMAP halves of the side-by-side tests run on the real Dovecot.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import postroom
from postroom import AuthenticationError, Basic, ConfigError, Ews, Outlook, ServerBusyError, UnsupportedError, Variable
from postroom.auth.oauth.endpoints import endpoints_for
from postroom.transports.graph.query import plan
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import PDF, simple
from tests.oauth_modes import client_credentials, pkce, sign_in, variables
from tests.servers.dovecot import Dovecot
from tests.servers.graph import GraphAttachment, GraphStandIn
from tests.servers.oauth import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, AuthorizationServerUnderTest

USER = "bot@example.test"
SHARED = "invoices@example.test"
APP = variables(USER, CONFIDENTIAL_CLIENT)


def outlook(graph: GraphStandIn, server: AuthorizationServerUnderTest, **changes: Any) -> Outlook:
    options: dict[str, Any] = {
        "mailbox": USER,
        "auth": client_credentials(server),
        "graph_url": graph.url,
        "ca_file": graph.ca_file,
    }
    options.update(changes)
    return Outlook(**options)


@pytest.fixture
def app_session(graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest) -> Iterator[postroom.Session]:
    """An app (client credentials) allowed to open the bot's mailbox and the shared one."""
    graph.app_scope[CONFIDENTIAL_CLIENT] = {USER, SHARED}
    session = postroom.connect("o", outlook(graph, authorization_server), variables=APP)
    yield session
    session.close()


def mail(subject: str, *, sender: str = "Alice <alice@example.test>", **options: Any) -> bytes:
    return simple(subject, sender, **options)


def invite(method: str, subject: str = "Quarterly review") -> bytes:
    """An iTIP message as Outlook sends one: text and a text/calendar alternative with the method."""
    message = email.message.EmailMessage()
    message["From"] = "Carol <carol@example.test>"
    message["To"] = USER
    message["Subject"] = subject
    message["Date"] = "Tue, 24 Nov 2026 09:00:00 +0000"
    message["Message-ID"] = f"<{method}-{abs(hash(subject))}@example.test>"
    message.set_content("You are invited.")
    calendar = (
        f"BEGIN:VCALENDAR\r\nMETHOD:{method}\r\nBEGIN:VEVENT\r\nDTSTART:20261203T090000Z\r\nDTEND:20261203T100000Z\r\n"
        "LOCATION:Room 4\r\nATTENDEE;PARTSTAT=ACCEPTED:mailto:bot@example.test\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    message.add_alternative(calendar, subtype="calendar", params={"method": method})
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


# -- the same bot on IMAP and on Outlook ----------------------------------------------------------


def test_properties_and_filters_match_imap_message_for_message(
    graph: GraphStandIn, dovecot: Dovecot, mailbox_user: str, authorization_server: AuthorizationServerUnderTest
) -> None:
    samples = [
        mail("Invoice 1041 from Acme", attachments={"i.pdf": PDF}),
        mail("Invoice 1042 from Acme (paid)", sender="Bob <bob@example.test>"),
        mail("Grüße aus Köln", html="<p><b>Hello.</b></p>"),
        mail("re: straße", sender="Dora <dora@example.test>"),
        invite("REQUEST"),
        invite("CANCEL", "Standup"),
        invite("REPLY", "Accepted: Quarterly review"),
    ]
    base = dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)
    for number, raw in enumerate(samples):
        dovecot.deliver(mailbox_user, raw, seen=number % 2 == 1, received=base + dt.timedelta(days=number))
        graph.deliver(mailbox_user, raw, seen=number % 2 == 1, received=base + dt.timedelta(days=number))
    graph.app_scope[CONFIDENTIAL_CLIENT] = {mailbox_user}
    filters: list[dict[str, Any]] = [
        {},
        {"status": "unread"},
        {"status": "read", "order": "oldest"},
        {"subject": "invoice"},
        {"subject": r"^Invoice \d+ from (?!.*paid)", "regex": True},
        {"subject": "GRÜSSE"},
        {"subject": "STRASSE"},
        {"sender": ["bob@", "Dora"]},
        {"since": dt.date(2026, 11, 22), "before": dt.date(2026, 11, 25)},
        {"status": "unread", "since": dt.date(2026, 11, 21), "order": "oldest", "limit": 2},
        {"limit": 3},
    ]
    imap = postroom.connect(
        "i", server_config(dovecot), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    )
    cloud = postroom.connect("g", outlook(graph, authorization_server, mailbox=mailbox_user), variables=APP)
    with imap, cloud:
        for chosen in filters:
            on_imap = [m.subject for m in postroom.messages(imap, **chosen)]
            on_graph = [m.subject for m in postroom.messages(cloud, **chosen)]
            assert on_graph == on_imap, chosen
        skip = {"key", "uid", "size", "headers", "html", "body", "text", "received_date", "defects"}
        for left, right in zip(
            postroom.messages(imap, order="oldest"), postroom.messages(cloud, order="oldest"), strict=True
        ):
            a, b = left.properties(), right.properties()
            assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}
            assert str(b["text"]).split() == str(a["text"]).split()  # Exchange renders HTML as text; words are the same
        meetings = {m.subject: m for m in postroom.messages(cloud) if m.item_kind == "meeting"}
        assert {s: m.meeting_type for s, m in meetings.items()} == {
            "Quarterly review": "request",
            "Standup": "cancellation",
            "Accepted: Quarterly review": "accepted",
        }
        review = meetings["Quarterly review"].properties(with_bodies=False)
        assert review["meeting_start"] == "2026-12-03T09:00:00+00:00" and review["meeting_location"] == "Room 4"


def test_the_planner_never_sends_what_graph_refuses(app_session: postroom.Session, graph: GraphStandIn) -> None:
    graph.deliver(USER, mail("one"))
    combos: list[dict[str, Any]] = [
        {"status": s, "subject": subject, "order": o, "since": since}
        for s in ("all", "read", "unread")
        for subject in (None, "one", "ONE'S")
        for o in ("newest", "oldest")
        for since in (None, dt.date(2026, 1, 1))
    ]
    for chosen in combos:
        list(postroom.messages(app_session, **chosen))  # a 400 InefficientFilter would raise here
        query = plan(postroom.MessageFilter(**chosen))
        assert not (query.orderby and query.filter and "contains(" in query.filter)
    # the stand-in does refuse what Graph refuses
    token = _token(app_session)
    refused = [
        {"$filter": "isRead eq false", "$orderby": "receivedDateTime desc"},
        {
            "$filter": "receivedDateTime ge 2026-01-01T00:00:00Z and contains(subject,'x')",
            "$orderby": "receivedDateTime desc",
        },
        {"$search": '"invoice"', "$filter": "isRead eq false"},
    ]
    for params in refused:
        reply = _raw_get(graph, token, f"/v1.0/users/{USER}/mailFolders/inbox/messages", params)
        assert reply.status_code == 400 and reply.json()["error"]["code"] in {"InefficientFilter", "BadRequest"}


def test_paging_follows_next_links_verbatim_and_lists_each_message_once(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    for number in range(2300):
        graph.deliver(
            USER, mail(f"m{number}"), received=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=number)
        )
    before = graph.count("GET", r"/mailFolders/[^/]+/messages$")
    subjects = [m.subject for m in postroom.messages(app_session, order="oldest")]
    assert subjects == [f"m{n}" for n in range(2300)]
    # 3 pages of 1000 ids, then one query per chunk of the loop (100, 1000, 1000, 200): no $batch, no GET per message
    assert graph.count("GET", r"/mailFolders/[^/]+/messages$") - before == 3 + 4
    assert graph.sub_requests == 7  # the well-known folders' ids, once per session; nothing per message
    # a limit Graph serves alone stops the paging: one page of ids, one chunk
    before = graph.count("GET", r"/mailFolders/[^/]+/messages$")
    assert len(list(postroom.messages(app_session, limit=5))) == 5
    assert graph.count("GET", r"/mailFolders/[^/]+/messages$") - before == 2


# -- ids, moves and retries -------------------------------------------------------------------------


def test_a_moved_message_keeps_its_immutable_id_which_graph_changes_otherwise(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    graph.deliver(USER, mail("keep me"))
    message = next(iter(postroom.messages(app_session)))
    moved = postroom.move(app_session, message, "Archive")[0]
    assert moved.status == "done" and moved.new_key is not None
    assert moved.new_key.id == message.key.id and moved.new_key.folder == "Archive"
    again = postroom.get_message(app_session, str(moved.new_key))
    assert again.subject == "keep me"
    # without the Prefer header (a peer that forgets it), Graph gives the message a new id on a move
    token = _token(app_session)
    archive = graph.mailbox(USER).folder("archive").id
    reply = httpx.post(
        f"{graph.url}/v1.0/users/{USER}/messages/{message.key.id}/move",
        json={"destinationId": graph.mailbox(USER).folder("inbox").id},
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=graph.ca_file),
    )
    assert reply.status_code == 201 and reply.json()["id"] != message.key.id
    assert archive


def test_a_move_whose_reply_was_lost_is_not_sent_again_and_says_already_done(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    for number in range(45):
        graph.deliver(USER, mail(f"n{number}"))
    found = list(postroom.messages(app_session))
    graph.cut_next = 1  # the next reply (the first $batch of moves) is cut after Graph did the work
    results = postroom.move(app_session, found, "Archive")
    assert [r.ok for r in results] == [True] * 45
    statuses = [r.status for r in results]
    assert statuses.count("already_done") == 20 and statuses.count("done") == 25
    assert all(r.new_key is not None and r.new_key.folder == "Archive" for r in results)
    assert len(graph.in_folder(USER, "archive")) == 45 and not graph.in_folder(USER, "inbox")
    assert app_session.reconnects == 1


def test_bulk_calls_give_one_result_per_message_and_a_gone_one_says_so(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    for number in range(30):
        graph.deliver(USER, mail(f"b{number}"))
    found = list(postroom.messages(app_session, order="oldest"))
    store = graph.mailbox(USER)
    with graph.lock:
        del store.messages[str(found[3].key.id)]  # gone meanwhile (another client)
    marked = postroom.mark_read(app_session, found)
    assert [r.ok for r in marked] == [n != 3 for n in range(30)]
    assert marked[3].error is not None and "ErrorItemNotFound" in str(marked[3].error)
    assert "request-id" in str(marked[3].error)
    deleted = postroom.delete(app_session, found[:5])
    assert [r.status for r in deleted] == ["done", "done", "done", "already_done", "done"]
    assert graph.count("POST", r"^/\$batch$") >= 2 and graph.sub_requests >= 35


# -- Graph's limits ---------------------------------------------------------------------------------


def test_the_governor_never_lets_a_fifth_request_into_flight(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest, tmp_path: Path
) -> None:
    graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
    for number in range(40):
        graph.deliver(USER, mail(f"c{number}", attachments={"f.bin": b"x" * 1000}))
    graph.latency = 0.02
    errors: list[BaseException] = []

    def bot(index: int) -> None:
        try:
            config = outlook(graph, authorization_server)
            with postroom.Runtime(name=f"bot{index}"), postroom.connect(f"s{index}", config, variables=APP) as session:
                for message in postroom.messages(session):
                    message.save_attachments(tmp_path / str(index))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=bot, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert graph.throttled == 0 and graph.peak_in_flight == 4


def test_throttling_is_waited_out_inside_and_outside_batches_or_reported(
    app_session: postroom.Session, graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    for number in range(25):
        graph.deliver(USER, mail(f"t{number}"))
    graph.throttle_next = 2
    found = list(postroom.messages(app_session))
    assert len(found) == 25
    graph.throttle_in_batch = 5  # five requests inside the next batch answer 429 + Retry-After
    assert all(r.status == "done" for r in postroom.mark_read(app_session, found))
    assert all(m.is_read for m in graph.mailbox(USER).messages.values())
    impatient = outlook(graph, authorization_server, max_throttle_wait=0)
    with postroom.connect("impatient", impatient, variables=APP) as session:
        graph.throttle_next = 1
        with pytest.raises(ServerBusyError) as busy:
            list(postroom.messages(session))
    assert "ApplicationThrottled" in str(busy.value) and busy.value.retry_after == 1.0


# -- reading -------------------------------------------------------------------------------------


def test_attachments_stream_item_attachments_save_as_eml_and_references_refuse(
    app_session: postroom.Session, graph: GraphStandIn, tmp_path: Path
) -> None:
    inner = mail("the attached one", attachments={"inner.pdf": PDF})
    outer = email.message_from_bytes(
        mail("outer", attachments={"big.bin": bytes(range(256)) * 4096}), policy=email.policy.default
    )
    outer.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))  # type: ignore[arg-type]
    stored = graph.deliver(USER, outer.as_bytes())
    stored.attachments.append(GraphAttachment("plan.docx", "application/octet-stream", b"", kind="referenceAttachment"))
    message = next(iter(postroom.messages(app_session)))
    assert message.attachment_names == ["big.bin", "the attached one.eml", "plan.docx"]
    saved = message.save_attachments(tmp_path, pattern="*.bin")
    assert saved[0].path.read_bytes() == bytes(range(256)) * 4096
    eml = message.save_attachments(tmp_path, pattern="*.eml")[0]
    assert email.message_from_bytes(eml.path.read_bytes())["Subject"] == "the attached one"
    with pytest.raises(UnsupportedError, match="reference attachment"):
        message.save_attachments(tmp_path, pattern="*.docx")
    whole = message.save(tmp_path / "whole.eml")
    assert whole.read_bytes() == stored.raw  # $value: the MIME as stored


def test_a_subject_cannot_forge_a_header_and_headers_come_from_the_server(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    stored = graph.deliver(USER, mail("plain"))
    stored.subject = "Hi\r\nBcc: victim@example.test"
    message = next(iter(postroom.messages(app_session)))
    assert message.subject == "Hi  Bcc: victim@example.test" and message.bcc == []
    assert message.headers["Message-ID"] == [stored.message_id]


# -- sending ---------------------------------------------------------------------------------------


def test_reply_forward_and_send_go_through_graph_as_mime_with_a_copy_in_sent_items(
    app_session: postroom.Session, graph: GraphStandIn, tmp_path: Path
) -> None:
    original = graph.deliver(USER, mail("question", attachments={"a.pdf": PDF}))
    message = next(iter(postroom.messages(app_session)))
    receipt = postroom.reply(app_session, message, "answer")
    assert receipt.recipients == ("alice@example.test",)
    postroom.forward(app_session, message, to="dave@example.test", body="fyi")
    postroom.send(app_session, to="erin@example.test", bcc="hidden@example.test", subject="hello", body="hi")
    sent = [email.message_from_bytes(raw, policy=email.policy.default) for raw in graph.outbox]
    assert sent[0]["In-Reply-To"] == original.message_id and str(sent[0]["Subject"]) == "Re: question"
    assert any(part.get_filename() == "a.pdf" for part in sent[1].walk())
    assert sent[2]["Bcc"] == "hidden@example.test"  # Bcc travels in the MIME; Exchange strips it on delivery
    assert len(graph.in_folder(USER, "sentitems")) == 3
    # over 4 MB: a draft, the big file through an upload session (ordered chunks, no token), then send
    big = tmp_path / "scan.pdf"
    big.write_bytes(PDF + bytes(range(256)) * 24_000)  # 6.1 MB
    small = tmp_path / "note.txt"
    small.write_bytes(b"see the scan")
    receipt = postroom.send(app_session, to="erin@example.test", subject="big", body="x", attachments=[big, small])
    assert receipt.recipients == ("erin@example.test",) and len(graph.outbox) == 4
    delivered = email.message_from_bytes(graph.outbox[3], policy=email.policy.default)
    files = {part.get_filename(): part.get_payload(decode=True) for part in delivered.walk() if part.get_filename()}
    assert files == {"scan.pdf": big.read_bytes(), "note.txt": b"see the scan"}
    assert graph.count("PUT", "^/upload$") == 2 and graph.upload_authorizations == 0
    assert graph.count("POST", r"/sendMail$") == 3 and len(graph.in_folder(USER, "drafts")) == 0
    graph.refuse_uploads = True
    with pytest.raises(postroom.MailServerError, match="nothing was sent") as failed:
        postroom.send(app_session, to="erin@example.test", subject="big again", body="x", attachments=[big])
    assert not isinstance(failed.value, postroom.DeliveryUnknownError)
    assert len(graph.outbox) == 4 and len(graph.in_folder(USER, "drafts")) == 0  # the draft was deleted


# -- auth, mailboxes and errors --------------------------------------------------------------------


def test_an_app_outside_its_rbac_scope_is_told_what_to_fix_with_the_request_id(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    graph.app_scope[CONFIDENTIAL_CLIENT] = {"someone-else@example.test"}
    with pytest.raises(AuthenticationError) as denied:
        postroom.connect("o", outlook(graph, authorization_server), variables=APP)
    text = str(denied.value)
    assert "ErrorAccessDenied" in text and "request-id" in text
    assert "ApplicationAccessPolicy" in text and "RBAC for Applications" in text
    assert "daemon-Secret" not in text


def test_a_delegated_user_opens_a_shared_mailbox_only_with_the_grant(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    graph.deliver(SHARED, mail("for the team"))
    graph.deliver(USER, mail("mine"))
    own = outlook(graph, authorization_server, mailbox="me", auth=pkce(authorization_server))
    sign_in(authorization_server, own.auth, USER)  # type: ignore[arg-type]
    token = next(t for t in reversed(authorization_server.tokens.values()) if t.client_id == PUBLIC_CLIENT)
    assert "https://graph.microsoft.com/Mail.ReadWrite.Shared" in token.scope.split()
    names = variables(USER)
    with postroom.connect("me", own, variables=names) as session:
        assert [m.subject for m in postroom.messages(session)] == ["mine"]
        report = postroom.test_connection(own, variables=names).report
    assert f"identity={USER}" in report.capabilities and "Mail.ReadWrite.Shared" in " ".join(report.capabilities)
    shared = outlook(graph, authorization_server, mailbox=SHARED, auth=own.auth)
    with pytest.raises(AuthenticationError, match="Add-MailboxPermission"):
        postroom.connect("team", shared, variables=names)
    graph.delegates[SHARED] = {USER}
    with postroom.connect("team", shared, variables=names) as session:  # the same token, another mailbox
        message = next(iter(postroom.messages(session)))
        assert message.subject == "for the team"
        assert postroom.reply(session, message, "on it").sender == SHARED
    assert authorization_server.count("authorization_code") >= 1


def test_graph_tokens_are_kept_apart_from_the_ews_tokens_of_the_same_app(
    authorization_server: AuthorizationServerUnderTest,
) -> None:
    app = client_credentials(authorization_server)
    on_graph = Outlook(mailbox=USER, auth=app).auth
    with pytest.warns(postroom.EwsRetirementWarning):
        on_ews = Ews(provider="microsoft365", auth=app, mailbox=USER).auth
    assert on_graph.token_name != on_ews.token_name != app.token_name  # type: ignore[attr-defined]
    assert on_graph.endpoints().app_scopes == ("https://graph.microsoft.com/.default",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("cloud", "graph_host", "login_host"),
    [
        ("global", "https://graph.microsoft.com", "login.microsoftonline.com"),
        ("gcc-high", "https://graph.microsoft.us", "login.microsoftonline.us"),
        ("dod", "https://dod-graph.microsoft.us", "login.microsoftonline.us"),
        ("china", "https://microsoftgraph.chinacloudapi.cn", "login.chinacloudapi.cn"),
    ],
)
def test_each_cloud_has_its_graph_host_sign_in_host_and_scopes(cloud: str, graph_host: str, login_host: str) -> None:
    auth = postroom.OAuth2ClientCredentials(client_id="app", tenant_id="contoso.example", client_secret=Variable("S"))
    config = Outlook(mailbox=USER, auth=auth, azure_cloud=cloud)  # type: ignore[arg-type]
    assert config.address == f"{graph_host}/v1.0/users/{USER}"
    found = endpoints_for("microsoft365", tenant_id="t", azure_cloud=cloud, service="graph")
    assert found.token_url == f"https://{login_host}/t/oauth2/v2.0/token"
    assert found.app_scopes == (f"{graph_host}/.default",)
    assert f"{graph_host}/Mail.Send.Shared" in found.delegated_scopes


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"mailbox": "not an address"}, "mailbox", "neither 'me' nor an email address"),
        ({"mailbox": "me"}, "mailbox", "has no mailbox of its own"),
        ({"graph_url": "http://graph.example"}, "graph_url", "not an https base URL"),
        ({"azure_cloud": "mars"}, "azure_cloud", "mars"),
        ({"auth": Basic(username="u", password=Variable("P"))}, "auth", "OAuth2 tokens only"),
        ({"read_timeout": -1}, "read_timeout", ""),
    ],
)
def test_bad_settings_name_the_field(
    changes: dict[str, Any], field: str, words: str, authorization_server: AuthorizationServerUnderTest
) -> None:
    options: dict[str, Any] = {"mailbox": USER, "auth": client_credentials(authorization_server), **changes}
    with pytest.raises(ConfigError) as bad:
        Outlook(**options)
    assert bad.value.field == field and words in str(bad.value)


def test_folders_are_named_as_on_imap_in_any_language_and_can_be_created(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    store = graph.mailbox(USER)
    with graph.lock:
        store.folder("inbox").name = "Posteingang"  # a German mailbox
        store.folder("sentitems").name = "Gesendete Elemente"
    graph.deliver(USER, mail("deep"), folder="Posteingang/Projekte/2026")
    names = [f.name for f in postroom.folders(app_session)]
    assert "INBOX/Projekte/2026" in names and "Gesendete Elemente" in names
    assert [m.subject for m in postroom.messages(app_session, folder="INBOX", include_subfolders=True)] == ["deep"]
    assert [m.subject for m in postroom.messages(app_session, folder="INBOX/Proj*")] == []  # one level, as on IMAP
    assert [m.subject for m in postroom.messages(app_session, folder="inbox/proj*", include_subfolders=True)] == [
        "deep"
    ]
    postroom.send(app_session, to="x@example.test", subject="s", body="b")
    assert [m.subject for m in postroom.messages(app_session, folder="Sent")] == ["s"]
    created = postroom.create_folder(app_session, "INBOX/Processed/2026")
    assert created.name == "INBOX/Processed/2026"
    assert postroom.create_folder(app_session, "INBOX/Processed/2026").name == created.name  # exists: as it is
    with pytest.raises(ConfigError, match="no folder 'Nowhere'"):
        list(postroom.messages(app_session, folder="Nowhere"))
    sent_flags = {f.name: f.flags for f in postroom.folders(app_session)}
    assert sent_flags["Gesendete Elemente"] == ("\\Sent",)


def test_flags_are_outlook_follow_up_flags_and_keywords_are_categories(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    graph.deliver(USER, mail("tag me"))
    message = next(iter(postroom.messages(app_session)))
    assert postroom.flag(app_session, message)[0].ok
    assert postroom.add_flags(app_session, message, "Invoice", "Paid")[0].ok
    assert postroom.remove_flags(app_session, message, "Paid")[0].ok
    again = next(iter(postroom.messages(app_session)))
    assert again.flagged and again.flags == frozenset({"\\Flagged", "Invoice"})
    with pytest.raises(UnsupportedError, match="Answered"):
        postroom.add_flags(app_session, message, "\\Answered")


def test_cli_connect_test_connection_and_list_on_outlook(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    from click.testing import CliRunner

    from postroom.cli.main import cli

    graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
    graph.deliver(USER, mail("from the cli"))
    runner = CliRunner()
    base = ["--var", f"APP_SECRET={APP['APP_SECRET']}"]
    made = runner.invoke(
        cli,
        [
            *base, "connect", "work", "--protocol", "outlook", "--mailbox", USER, "--graph-url", graph.url,
            "--ca-file", str(graph.ca_file), "--auth", "oauth2-client-credentials", "--client-id", CONFIDENTIAL_CLIENT,
            "--client-secret", "var:APP_SECRET", "--authority", authorization_server.authority,
            "--oauth-ca-file", str(authorization_server.ca_file), "--test", "--json",
        ],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    tested = json.loads(made.stdout)["test"]
    assert tested["folder_count"] == 7 and tested["protocol"] == "outlook" and tested["round_trip_ms"] > 0
    assert (
        f"mailbox={USER}" in tested["capabilities"]
        and "granted=https://graph.microsoft.com/.default" in tested["capabilities"]
    )
    listed = runner.invoke(cli, [*base, "list", "--session", "work", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["messages"]
    assert [r["subject"] for r in rows] == ["from the cli"] and rows[0]["key"].startswith("outlook:INBOX;ID=")
    refused = runner.invoke(
        cli, ["connect", "x", "--protocol", "outlook", "--mailbox", USER, "--username", "u", "--password", "var:P"]
    )
    assert refused.exit_code == 3 and "basic is not a way to log in to Outlook" in refused.output


# -- helpers ---------------------------------------------------------------------------------------


def _token(session: postroom.Session) -> str:
    login = session.resolve_login()
    return login.tokens.access_token().reveal()  # type: ignore[union-attr]


def _raw_get(graph: GraphStandIn, token: str, path: str, params: dict[str, str]) -> httpx.Response:
    return httpx.get(
        graph.url + path,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=graph.ca_file),
    )


# -- incremental loops -----------------------------------------------------------------------------


def test_an_incremental_loop_yields_each_new_message_once_across_runs(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    for number in range(3):
        graph.deliver(USER, mail(f"first {number}"))

    def run(**options: Any) -> list[str]:
        return [m.subject for m in postroom.messages(app_session, since_last="invoice-bot", order="oldest", **options)]

    assert run() == ["first 0", "first 1", "first 2"]  # the first run: the backlog
    assert run() == []
    graph.deliver(USER, mail("second 0"))
    graph.deliver(USER, mail("second 1"))
    assert postroom.mark_read(app_session, next(iter(postroom.messages(app_session))))[0].ok  # a change, not new
    assert run(limit=1) == ["second 0"]  # left early: the position stays
    assert run() == ["second 0", "second 1"]
    assert run() == []
    moved = postroom.move(app_session, next(iter(postroom.messages(app_session, subject="first 1"))), "Archive")
    assert run() == []
    postroom.move(app_session, moved[0].new_key, "INBOX")  # type: ignore[arg-type]
    assert run() == ["first 1"]  # back in the folder: new to it again
    assert graph.count("GET", r"/messages/delta$") == 7  # one request per run: each round fits a page


def test_a_forgotten_delta_token_lists_the_folder_again_without_repeating_anything(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    for number in range(4):
        graph.deliver(USER, mail(f"old {number}"))
    assert len(list(postroom.messages(app_session, since_last="b"))) == 4
    graph.deliver(USER, mail("new one"))
    graph.expire_delta_tokens()  # Exchange's delta-token cache dropped it: 410 SyncStateNotFound
    before = graph.count("GET", r"/messages/delta$")
    assert [m.subject for m in postroom.messages(app_session, since_last="b")] == ["new one"]
    assert graph.count("GET", r"/messages/delta$") - before == 2  # the 410, then a fresh round
    assert [m.subject for m in postroom.messages(app_session, since_last="other-bot")] == [
        "new one",
        "old 3",
        "old 2",
        "old 1",
        "old 0",
    ]  # another name has its own position


def test_incremental_loops_are_refused_where_the_server_cannot_say_what_is_new(
    imap: postroom.Session, app_session: postroom.Session
) -> None:
    with pytest.raises(UnsupportedError, match="protocol='outlook'"):
        postroom.messages(imap, since_last="bot")
    with pytest.raises(ConfigError, match="follows one folder"):
        postroom.messages(app_session, since_last="bot", include_subfolders=True)


def test_a_runtime_keeps_positions_where_it_is_told(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    class Memory:
        def __init__(self) -> None:
            self.saved: dict[str, dict[str, Any]] = {}

        def load(self, name: str) -> dict[str, Any] | None:
            return self.saved.get(name)

        def save(self, name: str, position: dict[str, Any]) -> None:
            self.saved[name] = position

        def forget(self, name: str) -> None:
            self.saved.pop(name, None)

    graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
    graph.deliver(USER, mail("once"))
    store = Memory()
    with postroom.Runtime(positions=store), postroom.connect("o", outlook(graph, authorization_server), variables=APP):
        assert [m.subject for m in postroom.messages("o", since_last="bot")] == ["once"]
        assert [m.subject for m in postroom.messages("o", since_last="bot")] == []
    ((name, position),) = store.saved.items()
    assert name.startswith("bot\n") and len(position["seen"]) == 1


def test_ropc_signs_in_with_graph_scopes_and_a_revoked_token_is_renewed_mid_loop(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    from postroom.auth.oauth import RopcWarning
    from tests.servers.oauth import USER_PASSWORD

    for number in range(3):
        graph.deliver(USER, mail(f"note {number}"))
    with pytest.warns(RopcWarning):
        mode = postroom.OAuth2ROPC(
            client_id=Variable("APP"),
            username=Variable("USER"),
            password=Variable("PW"),
            authority=authorization_server.authority,
            ca_file=str(authorization_server.ca_file),
        )
    config = outlook(graph, authorization_server, mailbox="me", auth=mode)
    names = {"APP": PUBLIC_CLIENT, "USER": USER, "PW": USER_PASSWORD}
    with postroom.connect("me", config, variables=names) as session:
        for message in postroom.messages(session, order="oldest"):
            if message.subject == "note 1":
                assert authorization_server.revoke_access_tokens(USER) >= 1
                graph.forget_tokens()  # Graph notices the revocation (continuous access evaluation)
            assert postroom.mark_read(session, message)[0].ok
    assert all(m.is_read for m in graph.mailbox(USER).messages.values())
    issued = [t for t in authorization_server.tokens.values() if t.user == USER and t.client_id == PUBLIC_CLIENT]
    assert "https://graph.microsoft.com/Mail.ReadWrite" in issued[-1].scope.split()


def test_a_sign_in_without_the_shared_scope_is_told_to_add_it(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    graph.deliver(SHARED, mail("for the team"))
    graph.delegates[SHARED] = {USER}
    narrow = pkce(authorization_server, scopes=("https://graph.microsoft.com/Mail.ReadWrite",))
    config = outlook(graph, authorization_server, mailbox=SHARED, auth=narrow)
    sign_in(authorization_server, config.auth, USER)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError) as denied:
        postroom.connect("team", config, variables=variables(USER))
    assert "Mail.ReadWrite.Shared" in str(denied.value) and "sign in again" in str(denied.value)


def test_the_stand_in_refuses_a_fifth_request_in_flight_as_exchange_does(
    app_session: postroom.Session, graph: GraphStandIn
) -> None:
    """What makes the governor test mean something: without a governor, Graph answers 429."""
    graph.deliver(USER, mail("busy"))
    token = _token(app_session)
    graph.latency = 0.3
    statuses: list[int] = []

    def call() -> None:
        statuses.append(_raw_get(graph, token, f"/v1.0/users/{USER}/mailFolders/inbox", {}).status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses).count(200) == 4 and statuses.count(429) == 2


def test_move_all_by_filter_and_reply_all_on_outlook(app_session: postroom.Session, graph: GraphStandIn) -> None:
    for number in range(5):
        graph.deliver(USER, mail(f"Ticket {number}" if number % 2 else f"Note {number}"))
    moved = postroom.move_all(app_session, "Archive", subject="Ticket")
    assert sorted(r.status for r in moved) == ["done", "done"]
    assert sorted(m.subject for m in graph.in_folder(USER, "archive")) == ["Ticket 1", "Ticket 3"]
    note = next(iter(postroom.messages(app_session, subject="Note 0")))
    receipt = postroom.reply(app_session, note, "noted", reply_all=True)
    assert USER not in receipt.recipients and "alice@example.test" in receipt.recipients


def test_china_has_no_delta_so_an_incremental_loop_is_refused_before_any_request(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest
) -> None:
    graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
    graph.audience = "https://microsoftgraph.chinacloudapi.cn"  # the stand-in plays the China cloud
    config = outlook(graph, authorization_server, azure_cloud="china")
    with postroom.connect("cn", config, variables=APP) as session:
        before = len(graph.requests)
        with pytest.raises(UnsupportedError, match="21Vianet"):
            postroom.messages(session, since_last="bot")
        assert graph.count("GET", r"/messages/delta$") == 0 and len(graph.requests) - before <= 3


def test_debug_logs_never_show_a_token_or_an_upload_urls_query(
    app_session: postroom.Session, graph: GraphStandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * 5_000_000)
    graph.deliver(USER, mail("search me"))
    with caplog.at_level(logging.DEBUG):
        list(postroom.messages(app_session, subject="search me"))
        postroom.send(app_session, to="x@example.test", subject="large", body="b", attachments=[big])
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "/upload/" in text and "HTTP Request" in text  # httpx did log the requests
    token = _token(app_session)
    assert token not in text and "Bearer" not in text
    assert "search%20me" not in text and "search me'" not in text  # the listing's filter is hidden too
    assert "authtoken" not in text  # an upload URL's own credential


def test_a_bot_on_outlook_follows_the_inbox_by_delta_and_replies_once(
    graph: GraphStandIn, authorization_server: AuthorizationServerUnderTest, tmp_path: Path
) -> None:
    from postroom.runner import Bot

    graph.app_scope[CONFIDENTIAL_CLIENT] = {USER}
    for number in range(3):
        graph.deliver(USER, mail(f"Invoice {number}", attachments={f"i{number}.pdf": PDF}))
    bot = Bot(
        "outlook-bot",
        session=outlook(graph, authorization_server),
        loop={"subject": "^Invoice", "regex": True},
        ledger=f"sqlite:///{tmp_path / 'ledger.db'}",
        variables=APP,
    )

    @bot.step
    def handle(message: postroom.Message, context: Any) -> None:
        message.save_attachments(tmp_path / "saved")
        context.reply("Received.")
        context.move("Processed")

    first = bot.run()
    assert (first.new, first.outcome.done, first.exit_code) == (3, 3, 0), first.to_dict()
    graph.stats(reset=True)
    graph.deliver(USER, mail("Invoice 3", attachments={"i3.pdf": PDF}))
    second = bot.run()
    assert (second.new, second.outcome.done) == (1, 1)
    delta_calls = [path for _method, path in graph.requests if "/delta" in path]
    assert delta_calls, "the second run asked Graph for what changed, not for the whole folder"
    replies = [email.message_from_bytes(raw, policy=email.policy.default) for raw in graph.outbox]
    assert sorted(str(r["Subject"]) for r in replies) == [f"Re: Invoice {n}" for n in range(4)]
    assert len(graph.in_folder(USER, "Processed")) == 4
    third = bot.run()
    assert (third.new, third.outcome.done) == (0, 0)
