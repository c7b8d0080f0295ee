"""The action commands end to end: a profile, Dovecot, the SMTP server, JSON and human output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from postroom.cli.main import cli
from tests.conftest import PASSWORD
from tests.mail_samples import PDF, simple
from tests.servers.dovecot import Dovecot, free_port
from tests.servers.smtp import SmtpServerUnderTest


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--var", f"PW={PASSWORD}", *args], catch_exceptions=False)


@pytest.fixture
def profile(dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str) -> str:
    assert dovecot.certs is not None
    result = run(
        "connect",
        "box",
        "--host",
        "localhost",
        "--port",
        str(dovecot.ports["imaps"]),
        "--ca-file",
        str(dovecot.certs.ca_file),
        "--username",
        mailbox_user,
        "--password",
        "var:PW",
        "--smtp-host",
        "localhost",
        "--smtp-port",
        str(smtp.starttls_port),
        "--smtp-security",
        "starttls",
    )
    assert result.exit_code == 0, result.output
    for number, subject in enumerate(["Invoice 1 from Acme", "Invoice 2 from Acme", "Newsletter"], start=1):
        attachments = {f"invoice-{number}.pdf": PDF} if subject.startswith("Invoice") else None
        dovecot.deliver(mailbox_user, simple(subject, sender=f"Acme <acme-{mailbox_user}>", attachments=attachments))
    dovecot.add_user(f"acme-{mailbox_user}")
    dovecot.deliver(mailbox_user, simple("seed"), folder="Processed")
    return "box"


def listed(*filters: str) -> list[str]:
    result = run("list", "--session", "box", "--json", *filters)
    assert result.exit_code == 0, result.output
    return [m["subject"] for m in json.loads(result.stdout)["messages"]]


def test_list_json_and_table(profile: str) -> None:
    assert listed() == ["Newsletter", "Invoice 2 from Acme", "Invoice 1 from Acme"]
    assert listed("--subject", r"^Invoice \d", "--regex", "--order", "oldest", "--limit", "1") == [
        "Invoice 1 from Acme"
    ]
    data = json.loads(run("list", "--session", "box", "--json", "--subject", "Invoice 1").stdout)["messages"][0]
    assert data["attachment_names"] == ["invoice-1.pdf"]
    assert data["text"] is None  # headers only unless --bodies
    assert (
        json.loads(run("list", "--session", "box", "--json", "--bodies", "--subject", "Invoice 1").stdout)["messages"][
            0
        ]["text"]
        == "Hello.\n"
    )
    table = run("list", "--session", "box")
    assert "Newsletter" in table.stdout and "invoice-2.pdf" in table.stdout


def test_folders(profile: str) -> None:
    data = json.loads(run("folders", "--session", "box", "--json").stdout)
    assert {f["name"] for f in data["folders"]} == {"INBOX", "Processed"}


def test_save_attachments_then_move_with_dry_run(profile: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    dry = run("save-attachments", "--session", "box", str(out), "--subject", "invoice", "--dry-run", "--json")
    assert [r["detail"] for r in json.loads(dry.stdout)["results"]] == ["invoice-2.pdf", "invoice-1.pdf"]
    assert not out.exists()
    saved = run("save-attachments", "--session", "box", str(out), "--subject", "invoice")
    assert saved.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["invoice-1.pdf", "invoice-2.pdf"]
    assert "saved: 2 of 2" in saved.stdout
    would = run("move", "--session", "box", "--to", "Processed", "--subject", "invoice", "--dry-run")
    assert "would move: 2 of 2" in would.stdout
    assert listed("--subject", "invoice") == ["Invoice 2 from Acme", "Invoice 1 from Acme"]
    moved = run("move", "--session", "box", "--to", "Processed", "--subject", "invoice", "--json")
    results = json.loads(moved.stdout)["results"]
    assert [r["ok"] for r in results] == [True, True]
    assert all(r["new_key"].startswith("Processed;") for r in results)
    assert listed() == ["Newsletter"]


def test_save_eml(profile: str, tmp_path: Path) -> None:
    result = run("save", "--session", "box", str(tmp_path / "eml"), "--subject", "Newsletter")
    assert result.exit_code == 0
    assert [p.name for p in (tmp_path / "eml").iterdir()] == ["Newsletter.eml"]


def test_delete_needs_a_filter_or_all(profile: str) -> None:
    refused = run("delete", "--session", "box")
    assert refused.exit_code == 3
    assert "refusing to delete every message of INBOX without a filter" in refused.stderr
    assert len(listed()) == 3
    assert run("delete", "--session", "box", "--subject", "Newsletter").exit_code == 0
    assert listed() == ["Invoice 2 from Acme", "Invoice 1 from Acme"]


def test_mark_read_and_status_filter(profile: str) -> None:
    assert run("mark", "--session", "box", "--read", "--subject", "Newsletter").exit_code == 0
    assert listed("--status", "read") == ["Newsletter"]
    assert listed("--status", "unread") == ["Invoice 2 from Acme", "Invoice 1 from Acme"]


def test_send_reply_forward(profile: str, dovecot: Dovecot, mailbox_user: str, tmp_path: Path) -> None:
    attachment = tmp_path / "report.pdf"
    attachment.write_bytes(PDF)
    dry = run(
        "send",
        "--session",
        "box",
        "--to",
        mailbox_user,
        "--subject",
        "Report",
        "--body",
        "see file",
        "--attach",
        str(attachment),
        "--dry-run",
        "--json",
    )
    assert json.loads(dry.stdout)["recipients"] == [mailbox_user]
    assert "Report" not in listed()
    sent = run(
        "send",
        "--session",
        "box",
        "--to",
        mailbox_user,
        "--subject",
        "Report",
        "--body",
        "see file",
        "--attach",
        str(attachment),
    )
    assert sent.exit_code == 0, sent.output
    assert "Report" in listed()
    replied = run("reply", "--session", "box", "--subject", "Invoice 1", "--body", "Paid, thanks.", "--json")
    assert json.loads(replied.stdout)["results"][0]["recipients"] == [f"acme-{mailbox_user}"]
    forwarded = run("forward", "--session", "box", "--subject", "Invoice 2", "--to", mailbox_user, "--body", "FYI")
    assert forwarded.exit_code == 0
    assert "Fwd: Invoice 2 from Acme" in listed()
    missing = run(
        "send", "--session", "box", "--to", mailbox_user, "--subject", "x", "--attach", str(tmp_path / "nope")
    )
    assert missing.exit_code == 3
    assert "attachments: not found" in missing.stderr


def test_pop3_move_is_refused_before_touching_the_server(dovecot: Dovecot, mailbox_user: str) -> None:
    assert dovecot.certs is not None
    run(
        "connect",
        "pop",
        "--protocol",
        "pop3",
        "--host",
        "localhost",
        "--port",
        str(dovecot.ports["pop3s"]),
        "--ca-file",
        str(dovecot.certs.ca_file),
        "--username",
        mailbox_user,
        "--password",
        "var:PW",
    )
    dovecot.deliver(mailbox_user, simple("only"))
    result = run("move", "--session", "pop", "--to", "Elsewhere", "--subject", "only")
    assert result.exit_code == 8
    assert "moving messages is not possible on POP3" in result.stderr


def test_reply_to_many_prints_every_result_and_exits_1_on_a_partial_failure(
    profile: str, dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str
) -> None:
    stranger = f"nobody-{mailbox_user}"
    dovecot.deliver(mailbox_user, simple("Invoice 9 from Nobody", sender=f"Nobody <{stranger}>"))
    smtp.refused.add(stranger)
    try:
        result = run("reply", "--session", "box", "--subject", "Invoice", "--body", "ack", "--json")
    finally:
        smtp.refused.discard(stranger)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False
    by_subject = {row["subject"]: row for row in data["results"]}
    assert sorted(by_subject) == ["Invoice 1 from Acme", "Invoice 2 from Acme", "Invoice 9 from Nobody"]
    assert [by_subject[s]["sent"] for s in sorted(by_subject)] == [True, True, False]
    assert "refused" in by_subject["Invoice 9 from Nobody"]["error"]
    human = run("reply", "--session", "box", "--subject", "Invoice 1", "--body", "again")
    assert human.exit_code == 0 and "replied: 1 of 1" in human.output


def test_create_folder(profile: str) -> None:
    made = run("create-folder", "--session", "box", "Archive/2026", "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout) == {"ok": True, "folder": "Archive/2026"}
    listed = run("folders", "--session", "box", "--json")
    assert {"Archive", "Archive/2026"} <= {f["name"] for f in json.loads(listed.stdout)["folders"]}
    again = run("create-folder", "--session", "box", "Archive/2026")
    assert again.exit_code == 0 and "folder 'Archive/2026' is there" in again.output


HOSTILE_SUBJECTS = [
    "broken [/] markup",
    "[bold red]FAKE[/bold red]",
    "[link=https://evil.example]Click me[/link]",
    "title \x1b]0;pwned\x07 set",
    "tab\there, bell\x07, del\x7f",
]


def hostile(dovecot: Dovecot, user: str) -> None:
    for number, subject in enumerate(HOSTILE_SUBJECTS):
        raw = (
            f"From: Mallory <mallory@example.test>\r\nTo: {user}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 24 Nov 2026 09:0{number}:00 +0000\r\nMessage-ID: <h{number}@example.test>\r\n\r\nhi\r\n"
        ).encode()
        dovecot.deliver(user, raw, folder="Hostile")


def test_piped_list_keeps_one_row_per_message_and_shows_controls_as_escapes(
    profile: str, dovecot: Dovecot, mailbox_user: str
) -> None:
    hostile(dovecot, mailbox_user)
    result = run("list", "--session", "box", "--folder", "Hostile")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(HOSTILE_SUBJECTS)
    assert all(line.count("\t") == 4 for line in lines)  # five columns, whatever the subject holds
    assert not any(ch in result.stdout for ch in "\x1b\x07\x7f")
    assert "title \\x1b]0;pwned\\x07 set" in result.stdout and "tab\\x09here, bell\\x07, del\\x7f" in result.stdout


def test_a_terminal_shows_what_mail_says_and_obeys_none_of_it(
    profile: str, dovecot: Dovecot, mailbox_user: str, isolated_home: Path
) -> None:
    """`postroom list` in a real pseudo-terminal (util-linux `script`): the rich table shows markup as text
    and every control character as its escape, so no subject can colour, link or retitle the terminal."""
    import os
    import shlex
    import subprocess
    import sys

    hostile(dovecot, mailbox_user)
    command = shlex.join(
        [sys.executable, "-m", "postroom", "--var", f"PW={PASSWORD}", "list", "--session", "box", "--folder", "Hostile"]
    )
    env = {**os.environ, "COLUMNS": "250", "TERM": "xterm-256color"}
    done = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60, env=env)
    screen = done.stdout
    assert done.returncode == 0, screen + done.stderr
    assert "internal error" not in screen
    assert "broken [/] markup" in screen and "[bold red]FAKE[/bold red]" in screen  # shown, not rendered
    assert "[link=https://evil.example]Click me[/link]" in screen and "\x1b]8;" not in screen  # no hyperlink
    assert "\x1b]0;" not in screen and "\x07" not in screen  # the title is not set, no bell
    assert "title \\x1b]0;pwned\\x07 set" in screen
    assert "Hostile;UIDVALIDITY=" in screen.replace("\r\n", "") or "Hostile;UIDVALID" in screen  # the key is there


def test_the_rendered_screen_in_tmux_shows_every_subject_as_text_and_keeps_its_title(
    profile: str, dovecot: Dovecot, mailbox_user: str, tmp_path: Path
) -> None:
    """The screen a user sees (tmux renders the terminal, `capture-pane` reads it back): each hostile
    subject is there as literal text on its own row, and the window title is not what a subject asked."""
    import os
    import shlex
    import shutil
    import subprocess
    import sys
    import time

    tmux = shutil.which("tmux")
    assert tmux, "scripts/test installs tmux (Debian package); install it to run this test"
    hostile(dovecot, mailbox_user)
    socket = str(tmp_path / "tmux.sock")  # a server of this test's own, never the user's tmux
    done_flag = tmp_path / "done"
    command = shlex.join(
        [sys.executable, "-m", "postroom", "--var", f"PW={PASSWORD}", "list", "--session", "box", "--folder", "Hostile"]
    )
    env = {**os.environ, "TERM": "xterm-256color"}
    base = [tmux, "-S", socket, "-f", "/dev/null"]
    subprocess.run(
        [
            *base,
            "new-session",
            "-d",
            "-x",
            "250",
            "-y",
            "30",
            "-s",
            "t",
            f"{command}; touch {shlex.quote(str(done_flag))}; sleep 60",
        ],
        check=True,
        env=env,
        timeout=30,
    )
    try:
        subprocess.run([*base, "set-option", "-g", "set-titles", "on"], check=True, timeout=10)
        deadline = time.monotonic() + 60
        while not done_flag.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert done_flag.exists(), "postroom list did not finish"
        screen = subprocess.run(
            [*base, "capture-pane", "-p", "-t", "t"], check=True, capture_output=True, text=True, timeout=10
        ).stdout
        title = subprocess.run(
            [*base, "display-message", "-p", "-t", "t", "#{pane_title}"], check=True, capture_output=True, text=True
        ).stdout.strip()
    finally:
        subprocess.run([*base, "kill-server"], check=False, timeout=10)
    rows = [line for line in screen.splitlines() if "Mallory" in line]
    assert len(rows) == len(HOSTILE_SUBJECTS), screen  # one row each: nothing split, swallowed or hidden
    for shown in (
        "broken [/] markup",
        "[bold red]FAKE[/bold red]",
        "[link=https://evil.example]Click me[/link]",
        "title \\x1b]0;pwned\\x07 set",
        "tab\\x09here, bell\\x07, del\\x7f",
    ):
        assert sum(shown in row for row in rows) == 1, (shown, screen)
    assert "pwned" not in title


def test_a_reader_that_goes_away_ends_the_command_quietly(profile: str, dovecot: Dovecot, mailbox_user: str) -> None:
    import os
    import shlex
    import subprocess
    import sys

    for number in range(600):  # more than a pipe holds (64 KiB), so the writer meets the closed end
        dovecot.deliver(mailbox_user, simple(f"bulk {number:04d} " + "x" * 120))
    command = shlex.join([sys.executable, "-m", "postroom", "--var", f"PW={PASSWORD}", "list", "--session", "box"])
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"{command} | head -1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ,
    )
    assert len(done.stdout.splitlines()) == 1
    assert "error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 141)  # 141: killed by the pipe, as other tools are


def test_reply_without_a_body_or_a_filter_sends_nothing_and_says_which_flag(
    profile: str, dovecot: Dovecot, mailbox_user: str, smtp: SmtpServerUnderTest
) -> None:
    dovecot.deliver(mailbox_user, simple("please answer"))
    before = len(smtp.received)
    no_body = run("reply", "--session", "box", "--subject", "please answer")
    assert no_body.exit_code == 3
    assert "body: a reply needs its text" in no_body.stderr and "--body TEXT" in no_body.stderr
    no_filter = run("reply", "--session", "box", "--body", "ack")
    assert no_filter.exit_code == 3
    assert "--all" not in no_filter.stderr  # for reply, --all means reply-all: never offered as the way out
    assert len(smtp.received) == before


def test_test_connection_logs_in_to_the_smtp_server_too(profile: str, smtp: SmtpServerUnderTest) -> None:
    tested = run("test-connection", "box", "--json")
    assert tested.exit_code == 0, tested.output
    found = json.loads(tested.stdout)["smtp"]
    assert found["address"] == f"smtp://localhost:{smtp.starttls_port}"
    assert found["tls_version"] in {"TLSv1.2", "TLSv1.3"} and "AUTH" in found["extensions"]
    assert "smtp " in run("test-connection", "box").output


def test_a_refused_recipient_is_a_setting_to_fix_not_a_network_error(profile: str, smtp: SmtpServerUnderTest) -> None:
    smtp.refused.add("nobody@example.test")
    try:
        sent = run("send", "--session", "box", "--to", "nobody@example.test", "--subject", "x", "--body", "y")
    finally:
        smtp.refused.discard("nobody@example.test")
    assert sent.exit_code == 3  # exit 6 means "retry later"; this would fail again
    assert "every recipient was refused" in sent.stderr and "nothing was sent" in sent.stderr


def test_show_one_message_by_key_with_short_flags_and_a_default_session(
    profile: str, dovecot: Dovecot, mailbox_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.deliver(mailbox_user, simple("\x1b]0;pwned\x07 [bold]hi[/bold]", body="line one\n\x1b[31mred\n"))
    monkeypatch.setenv("POSTROOM_SESSION", "box")  # a default session: no -s needed
    listed = json.loads(run("list", "-n", "1", "-j").stdout)
    assert listed["count"] == 1
    key = listed["messages"][0]["key"]
    shown = run("show", key)
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.stdout and "\\x1b]0;pwned\\x07 [bold]hi[/bold]" in shown.stdout
    assert "line one" in shown.stdout and "\\x1b[31mred" in shown.stdout
    as_json = json.loads(run("show", "-s", "box", key, "-j").stdout)
    assert as_json["key"] == key and as_json["headers"]["Subject"]
    needs_json = run("list", "--bodies")
    assert needs_json.exit_code == 3 and "--bodies needs --json" in needs_json.stderr


def test_summaries_speak_in_the_past_tense(profile: str) -> None:
    moved = run("move", "-s", "box", "--subject", "Newsletter", "--to", "Processed")
    assert moved.exit_code == 0, moved.output
    assert "moved: 1 of 1" in moved.stdout


def test_folders_json_gives_the_servers_delimiter_and_flags(profile: str) -> None:
    listed = json.loads(run("folders", "-s", "box", "-j").stdout)["folders"]
    inbox = next(folder for folder in listed if folder["name"] == "INBOX")
    assert inbox["delimiter"] == "/" and isinstance(inbox["flags"], list) and "special_use" in inbox


def test_an_smtp_server_that_refuses_is_reported_while_reading_still_works(dovecot: Dovecot, mailbox_user: str) -> None:
    assert dovecot.certs is not None
    saved = run(
        "connect", "mute", "--host", "localhost", "--port", str(dovecot.ports["imaps"]),
        "--ca-file", str(dovecot.certs.ca_file), "--username", mailbox_user, "--password", "var:PW",
        "--smtp-host", "localhost", "--smtp-port", str(free_port()), "--smtp-security", "starttls", "--test", "-j",
    )  # fmt: skip
    assert saved.exit_code == 0, saved.output
    tested = json.loads(saved.stdout)["test"]
    assert tested["smtp"] is None and tested["smtp_error"]["type"] == "ServerUnreachableError"
    assert "smtp" in run("test-connection", "mute").output and "FAILED" in run("test-connection", "mute").output


def test_mark_adds_and_removes_flags_and_keywords(profile: str) -> None:
    flagged = run("mark", "-s", "box", "--subject", "Newsletter", "--flag", "flagged", "--flag", "Read-Later")
    assert flagged.exit_code == 0, flagged.output
    listed = json.loads(run("list", "-s", "box", "--subject", "Newsletter", "-j").stdout)["messages"]
    assert listed[0]["flagged"] is True and listed[0]["seen"] is False
    assert run("mark", "-s", "box", "--subject", "Newsletter", "--unflag", "flagged").exit_code == 0
    assert (
        json.loads(run("list", "-s", "box", "--subject", "Newsletter", "-j").stdout)["messages"][0]["flagged"] is False
    )
    both = run("mark", "-s", "box", "--subject", "Newsletter", "--read", "--flag", "flagged")
    assert both.exit_code == 3 and "one change per command" in both.stderr
    bad = run("mark", "-s", "box", "--subject", "Newsletter", "--flag", "two words")
    assert bad.exit_code == 3 and "flags:" in bad.stderr
