"""Loop over messages with filters, and message properties, against a real Dovecot."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json

import pytest

import postroom
from postroom import ConfigError, Session, UnsupportedError
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import HOSTILE, cpython_corpus, simple
from tests.servers.dovecot import Dovecot


def pop3_session(dovecot: Dovecot, user: str) -> Session:
    variables = {"MAILBOX_USER": user, "MAILBOX_PASSWORD": PASSWORD}
    return postroom.connect("p", server_config(dovecot, "pop3"), variables=variables)


def subjects(session: Session | str, **filters: object) -> list[str]:
    return [m.subject for m in postroom.messages(session, **filters)]  # type: ignore[arg-type]


@pytest.fixture
def invoices(dovecot: Dovecot, mailbox_user: str) -> None:
    """Six messages in INBOX (two read), plus nested folders."""
    mail = [
        ("Invoice 1001 from Acme", "Acme Billing <billing@acme.test>", "Tue, 03 Nov 2026 10:00:00 +0000", False),
        ("invoice 1002 from Globex", "ar@globex.test", "Wed, 11 Nov 2026 10:00:00 +0000", True),
        ("Re: lunch?", "Bob <bob@example.test>", "Thu, 12 Nov 2026 10:00:00 +0000", False),
        ("INVOICE 1003 (final)", "Initech <invoices@initech.test>", "Fri, 20 Nov 2026 10:00:00 +0000", False),
        ("Rechnung für Oktober", "Müller GmbH <rechnung@mueller.test>", "Sat, 21 Nov 2026 10:00:00 +0000", True),
        ('Quote "special" \\ chars', "q@example.test", "Sun, 22 Nov 2026 10:00:00 +0000", False),
    ]
    for subject, sender, date, seen in mail:
        dovecot.deliver(mailbox_user, simple(subject, sender, date=date), seen=seen)
    dovecot.deliver(
        mailbox_user, simple("Project kickoff", date="Mon, 02 Nov 2026 08:00:00 +0000"), folder="INBOX/Projects"
    )
    dovecot.deliver(mailbox_user, simple("Project invoice 77"), folder="INBOX/Projects/Alpha")
    dovecot.deliver(mailbox_user, simple("Entwurf"), folder="INBOX/Entwürfe")
    dovecot.deliver(mailbox_user, simple("archived invoice"), folder="Archive")


@pytest.mark.usefixtures("invoices")
class TestFilters:
    def test_all_newest_first_by_default(self, imap: Session) -> None:
        assert subjects(imap) == [
            'Quote "special" \\ chars',
            "Rechnung für Oktober",
            "INVOICE 1003 (final)",
            "Re: lunch?",
            "invoice 1002 from Globex",
            "Invoice 1001 from Acme",
        ]
        assert subjects(imap, order="oldest")[0] == "Invoice 1001 from Acme"

    def test_status(self, imap: Session) -> None:
        assert set(subjects(imap, status="read")) == {"invoice 1002 from Globex", "Rechnung für Oktober"}
        assert len(subjects(imap, status="unread")) == 4

    def test_subject_contains_case_insensitive_by_default(self, imap: Session) -> None:
        assert len(subjects(imap, subject="invoice")) == 3
        assert subjects(imap, subject="invoice", case_sensitive=True) == ["invoice 1002 from Globex"]

    def test_subject_regex(self, imap: Session) -> None:
        assert subjects(imap, subject=r"^invoice \d{4}\b", regex=True, order="oldest") == [
            "Invoice 1001 from Acme",
            "invoice 1002 from Globex",
            "INVOICE 1003 (final)",
        ]
        assert subjects(imap, subject=r"^Invoice \d+", regex=True, case_sensitive=True) == ["Invoice 1001 from Acme"]

    def test_invalid_regex_names_the_field(self, imap: Session) -> None:
        with pytest.raises(ConfigError, match=r"subject: '\(unclosed' is not a valid regular expression"):
            postroom.messages(imap, subject="(unclosed", regex=True)

    def test_several_senders_and_sender_regex(self, imap: Session) -> None:
        assert set(subjects(imap, sender=["acme", "INITECH"])) == {"Invoice 1001 from Acme", "INVOICE 1003 (final)"}
        assert subjects(imap, sender=r"@globex\.test$|^Bob", regex=True) == [
            "Re: lunch?",
            "invoice 1002 from Globex",
        ] or set(subjects(imap, sender=r"@globex\.test>$|^Bob", regex=True)) == {
            "Re: lunch?",
            "invoice 1002 from Globex",
        }

    def test_sender_matches_display_name_and_address(self, imap: Session) -> None:
        assert subjects(imap, sender="Acme Billing") == ["Invoice 1001 from Acme"]
        assert subjects(imap, sender="billing@acme.test") == ["Invoice 1001 from Acme"]

    def test_non_ascii_search_terms(self, imap: Session) -> None:
        assert subjects(imap, subject="für") == ["Rechnung für Oktober"]
        assert subjects(imap, sender="Müller") == ["Rechnung für Oktober"]
        assert subjects(imap, subject="FÜR", sender="müller") == ["Rechnung für Oktober"]

    def test_quotes_and_backslashes_are_searched_literally(self, imap: Session) -> None:
        assert subjects(imap, subject='"special" \\') == ['Quote "special" \\ chars']

    def test_dates_on_received_date(self, imap: Session, dovecot: Dovecot) -> None:
        today = dt.date.today()
        assert len(subjects(imap, since=today)) == 6  # delivered just now
        assert subjects(imap, before=today - dt.timedelta(days=1)) == []

    def test_limit_takes_the_first_matches(self, imap: Session) -> None:
        assert subjects(imap, limit=2) == ['Quote "special" \\ chars', "Rechnung für Oktober"]
        assert subjects(imap, subject="invoice", limit=2, order="oldest") == [
            "Invoice 1001 from Acme",
            "invoice 1002 from Globex",
        ]

    def test_nested_folder_subfolders_and_wildcards(self, imap: Session) -> None:
        assert subjects(imap, folder="Inbox/Projects") == ["Project kickoff"]
        assert subjects(imap, folder="INBOX/Projects", include_subfolders=True) == [
            "Project kickoff",
            "Project invoice 77",
        ]
        everything = subjects(imap, include_subfolders=True)
        assert len(everything) == 9 and "archived invoice" not in everything
        assert subjects(imap, folder="Inbox/Proj*") == ["Project kickoff"]
        assert subjects(imap, folder="INBOX/Entwürfe") == ["Entwurf"]
        assert {f.name for f in postroom.folders(imap)} >= {
            "INBOX",
            "INBOX/Projects/Alpha",
            "INBOX/Entwürfe",
            "Archive",
        }

    def test_unknown_folder_lists_the_real_ones(self, imap: Session) -> None:
        with pytest.raises(
            postroom.ProtocolError, match=r"cannot open folder 'INBOX/Nope'.*folders on this server:.*Archive"
        ):
            subjects(imap, folder="INBOX/Nope")

    @pytest.mark.parametrize("field", ["folder", "subject", "sender"])
    def test_line_breaks_never_reach_the_server(self, imap: Session, field: str) -> None:
        evil = 'x"\r\nA1 DELETE INBOX\r\n'
        with pytest.raises(ConfigError, match="line break"):
            postroom.messages(imap, **{field: evil})  # type: ignore[arg-type]
        assert len(subjects(imap)) == 6

    def test_reading_never_changes_read_status(self, imap: Session) -> None:
        for message in postroom.messages(imap, status="unread"):
            assert message.text and message.headers and message.raw()
        assert len(subjects(imap, status="unread")) == 4


def record_commands(session: Session) -> list[str]:
    """Every command line postroom sends on this session's connection (the real server still answers)."""
    sent: list[str] = []
    client = session._mailbox._client  # type: ignore[union-attr]
    real_send = client.send

    def send(data: bytes) -> None:
        sent.append(data.decode("utf-8", "replace"))
        real_send(data)

    client.send = send
    return sent


def test_headers_only_loop_never_downloads_a_body(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    dovecot.deliver(mailbox_user, simple("big one", attachments={"big.bin": b"x" * 300_000}))
    dovecot.deliver(mailbox_user, simple("small one"))
    sent = record_commands(imap)
    found = [(m.subject, m.attachment_names, m.size) for m in postroom.messages(imap, sender="alice")]
    assert [f[0] for f in found] == ["small one", "big one"]
    assert found[1][1] == ["big.bin"] and found[1][2] > 300_000
    fetched = " ".join(line for line in sent if "FETCH" in line)
    assert "BODY.PEEK[HEADER.FIELDS" in fetched
    assert "BODY.PEEK[]" not in fetched and "BODY.PEEK[1" not in fetched and "BODY.PEEK[2" not in fetched


def test_a_loop_over_the_inbox_reading_bodies_waits_for_few_round_trips(
    dovecot: Dovecot, mailbox_user: str, imap: Session
) -> None:
    """Each command the loop waits for is a round trip to a distant server: the inbox needs no LIST for the
    delimiter, and single-part bodies (section "") and multiparts' first parts (section 1) are both BODY[1],
    so a chunk's bodies come in one FETCH."""
    dovecot.deliver(mailbox_user, simple("single part"))
    dovecot.deliver(mailbox_user, simple("multipart", attachments={"a.pdf": b"%PDF-1.4 x"}))
    dovecot.deliver(mailbox_user, simple("another single part"))
    sent = record_commands(imap)
    texts = [m.text for m in postroom.messages(imap, order="oldest")]
    assert texts == ["Hello.\n"] * 3
    commands = [line.split(" ", 2)[1].upper() + " " + line.split(" ", 2)[2][:14] for line in sent]
    assert not any(c.startswith("LIST") for c in commands), commands
    assert sum("BODY.PEEK[1])" in line for line in sent) == 1, sent


def test_properties_are_complete_and_json_ready(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    dovecot.deliver(
        mailbox_user,
        simple("Props", body="Plain body\n", html="<p>HTML body</p>", attachments={"a.pdf": b"%PDF-1.4"}),
    )
    message = next(postroom.messages(imap))
    props = message.properties(with_headers=True)
    assert tuple(props) == postroom.PROPERTY_KEYS
    json.dumps(props)
    assert props["from"] == "Alice Example <alice@example.test>"
    assert props["from_name"] == "Alice Example"
    assert props["to"] == ["Bot <bot@example.test>"]
    assert props["subject"] == "Props"
    assert props["text"] == "Plain body\n"
    assert props["html"] == "<p>HTML body</p>\n"
    assert props["attachment_names"] == ["a.pdf"]
    assert props["has_attachments"] is True
    assert props["seen"] is False
    assert props["sent_date"] == "2026-11-24T09:00:00+00:00"
    assert props["received_date"] is not None and dt.datetime.fromisoformat(props["received_date"]).tzinfo is not None
    assert props["headers"] is not None and props["headers"]["Subject"] == ["Props"]
    html_loop = next(postroom.messages(imap, body_format="html"))
    assert html_loop.body == "<p>HTML body</p>\n"


def test_every_message_of_a_hostile_mailbox_is_yielded_and_readable(
    dovecot: Dovecot, mailbox_user: str, imap: Session
) -> None:
    corpus = cpython_corpus() + [(name, data) for name, (data, _) in HOSTILE.items()]
    for _name, data in corpus:
        dovecot.deliver(mailbox_user, data)
    seen = 0
    for message in postroom.messages(imap, order="oldest"):
        props = message.properties(with_headers=True)
        json.dumps(props)
        seen += 1
    assert len(corpus) > 50
    assert seen == len(corpus)


def test_fields_equal_a_full_stdlib_parse(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    """Structure-first reading gives what ``email`` with ``policy=default`` gives on the whole message."""
    for number in range(8):
        dovecot.deliver(
            mailbox_user,
            simple(
                f"Grüße Nr. {number}",
                sender=f"Jörg Ünger <j{number}@example.test>",
                body=f"Zeile {number}\nZweite Zeile €\n",
                html="<p>x</p>" if number % 2 else None,
                attachments={f"anhang-{number}.pdf": b"%PDF" * number} if number % 3 == 0 else None,
            ),
        )
    for message in postroom.messages(imap):
        full = email.message_from_bytes(message.raw(), policy=email.policy.default)
        body = full.get_body(("plain", "html"))
        assert body is not None
        assert message.subject == full["subject"]
        assert str(message.from_) == str(full["from"])
        assert message.sent_date == full["date"].datetime
        assert message.text == body.get_content().replace("\r\n", "\n")
        assert message.attachment_names == [part.get_filename() for part in full.iter_attachments()]


class TestPop3:
    def test_pop3_loop_filters_on_the_client(self, dovecot: Dovecot, mailbox_user: str) -> None:
        dovecot.deliver(mailbox_user, simple("first invoice"))
        dovecot.deliver(mailbox_user, simple("second note", attachments={"n.pdf": b"%PDF"}))
        pop3 = pop3_session(dovecot, mailbox_user)  # POP3 sees the maildrop as it was at login
        assert subjects(pop3) == ["second note", "first invoice"]
        assert subjects(pop3, subject="invoice") == ["first invoice"]
        message = next(postroom.messages(pop3, subject="note"))
        assert message.attachment_names == ["n.pdf"]
        assert message.seen is None
        assert str(message.key).startswith("pop3:")

    def test_every_hostile_message_is_readable_over_pop3(self, dovecot: Dovecot, mailbox_user: str) -> None:
        """POP3 has no BODYSTRUCTURE: the structure comes from the stdlib's parse of the whole message."""
        for data, _names in HOSTILE.values():
            dovecot.deliver(mailbox_user, data)
        pop3 = pop3_session(dovecot, mailbox_user)
        found = {}
        for message in postroom.messages(pop3, order="oldest"):
            found[message.subject] = message
            json.dumps(message.properties(with_headers=True))
        assert len(found) == len(HOSTILE)
        assert found["traversal"].attachment_names[:2] == ["../../etc/passwd", "..\\..\\Windows\\evil.exe"]
        deep = found["deep"]  # the stdlib's recursive parser gives up: the body stays whole, and it says so
        assert deep.attachment_names == [] and deep.text == ""
        assert any("nested too deeply" in defect for defect in deep.defects)

    @pytest.mark.parametrize(
        ("filters", "what"),
        [
            ({"folder": "Archive"}, "folder"),
            ({"include_subfolders": True}, "folder"),
            ({"status": "unread"}, "read status"),
        ],
    )
    def test_folders_and_flags_fail_before_any_command(
        self, pop3: Session, filters: dict[str, object], what: str
    ) -> None:
        with pytest.raises(UnsupportedError, match="not possible on POP3.*nothing was sent"):
            postroom.messages(pop3, **filters)  # type: ignore[arg-type]


def test_encoded_names_with_commas_and_raw_utf8_headers(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    raw = (
        "From: =?utf-8?q?M=C3=BCller=2C_J=C3=BCrgen?= <j@example.test>\r\n"
        'To: "Doe, Jane" <jane@example.test>, bob@example.test\r\n'
        "Subject: caf\u00e9 =?utf-8?q?cr=C3=A8me?=\r\n\r\nbody\r\n"
    ).encode()
    dovecot.deliver(mailbox_user, raw)
    message = next(postroom.messages(imap))
    assert str(message.from_) == '"Müller, Jürgen" <j@example.test>'
    assert [str(a) for a in message.to] == ['"Doe, Jane" <jane@example.test>', "bob@example.test"]
    assert message.subject == "café crème"
    full = email.message_from_bytes(message.raw(), policy=email.policy.default)
    assert message.subject == full["subject"] and str(message.from_) == str(full["from"])


def test_reading_bodies_fetches_a_whole_chunk_at_once(dovecot: Dovecot, mailbox_user: str, imap: Session) -> None:
    for number in range(30):
        dovecot.deliver(mailbox_user, simple(f"m{number}", body=f"body {number}\n"))
    sent = record_commands(imap)
    texts = [m.text for m in postroom.messages(imap, order="oldest")]
    assert texts == [f"body {n}\n" for n in range(30)]
    body_fetches = [c for c in sent if "BODY.PEEK[1]" in c or "BODY.PEEK[]" in c]
    assert len(body_fetches) == 1, body_fetches


@pytest.mark.parametrize(
    ("wanted", "found"),
    [
        ("GRÜSSE", {"Grüße aus Berlin", "GRÜSSE AUS KÖLN"}),
        ("strasse", {"Hauptstraße 1", "HAUPTSTRASSE 2"}),
        ("finance", {"\ufb01nance report"}),  # the fi ligature
        ("σοφος", {"ΣΟΦΟΣ", "σοφος"}),  # final sigma
        ("invoice", {"Invoice 7"}),
    ],
)
def test_the_server_narrows_to_a_superset_of_what_case_folding_matches(
    dovecot: Dovecot, mailbox_user: str, imap: Session, wanted: str, found: set[str]
) -> None:
    """IMAP SEARCH folds case letter by letter; postroom's rule folds fully (ß is ss). The server must
    never drop a message the rule accepts."""
    subjects_in = ["Grüße aus Berlin", "GRÜSSE AUS KÖLN", "Hauptstraße 1", "HAUPTSTRASSE 2", "\ufb01nance report"]
    for subject in [*subjects_in, "ΣΟΦΟΣ", "σοφος", "Invoice 7", "unrelated"]:
        dovecot.deliver(mailbox_user, simple(subject))
    assert set(subjects(imap, subject=wanted)) == found
