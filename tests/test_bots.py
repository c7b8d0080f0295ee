"""Bots: bot files checked with lines, each message processed once, re-runs, crashes, UIDVALIDITY changes,
mail whose delivery is unknown, failures, the Python API and the CLI, on real Dovecot and SMTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import cast

import pytest

import postroom
from postroom.runner import Bot, FailurePolicy, LocalRunner, load_bot, parse_bot
from postroom.runner.ledger import Ledger
from postroom.transports.contract import ItemResult, Watches
from postroom.transports.imap.keys import ImapKey
from postroom.transports.imap.writing import ImapWriting
from tests.bots import PASSWORD_ENV, bot_file, fill_mailbox, invoice, replies_by_original, until, watching
from tests.conftest import server_config
from tests.servers.cutting_proxy import CutRule, cutting_proxy
from tests.servers.dovecot import SHARED_PASSWORD, Dovecot
from tests.servers.smtp import SmtpServerUnderTest

POSTROOM = str(Path(sys.executable).with_name("postroom"))


pytestmark = pytest.mark.usefixtures("bot_password")


def _mine(smtp: SmtpServerUnderTest, messages: list[bytes]) -> dict[str, int]:
    """Replies the SMTP server took for these originals (other tests share the server)."""
    import email

    ids = {str(email.message_from_bytes(raw)["Message-ID"]).strip() for raw in messages}
    return {mid: n for mid, n in replies_by_original(smtp.received).items() if mid in ids}


def _folder_count(dovecot: Dovecot, user: str, folder: str) -> int:
    session = postroom.connect(
        f"count-{folder}", server_config(dovecot), variables={"MAILBOX_USER": user, "MAILBOX_PASSWORD": SHARED_PASSWORD}
    )
    with session:
        return len(list(postroom.messages(session, folder=folder)))


# -- bot files --------------------------------------------------------------------------------------------

GOOD = """\
bot: invoices
session: {profile: invoices}
loop:
  subject: '^Invoice (\\d+)'
  regex: true
steps:
  - save_attachments: out/
  - reply: "Thanks for {subject_match[1]}"
  - move: Processed
"""


@pytest.mark.parametrize(
    ("change", "field", "line", "words"),
    [
        (("  - move: Processed", "  - moove: Processed"), "steps[2].moove", 9, "not a step"),
        (("Thanks for {subject_match[1]}", "Thanks for {amount}"), "steps[1].reply.body", 8, "not a message field"),
        (("  regex: true", "  regex: true\n  colour: red"), "loop.colour", 6, "not a setting"),
        (("  regex: true\n", ""), "steps[1].reply.body", 7, "regular expression"),
        (("  - move: Processed", "  - move: Processed\n  - mark: read"), "steps[3].mark", 10, "took the message away"),
        (("bot: invoices", "bot: 'my bot!'"), "bot", 1, "not a bot name"),
        (("  - save_attachments: out/", "  - save_attachments: {pattern: '*.pdf'}"), "folder", 7, "required"),
        (("steps:", "on_failure: {retries: 2, backoff: soon}\nsteps:"), "on_failure.backoff", 6, "not a duration"),
        (("  regex: true", "  regex: true\n  subject: again"), "loop.subject", 6, "is given twice"),
        (("loop:", "loop: [\n"), "bot.yaml", 6, "not valid YAML"),
    ],
)
def test_a_wrong_bot_file_names_the_field_and_its_line(
    change: tuple[str, str], field: str, line: int | None, words: str
) -> None:
    text = GOOD.replace(*change)
    assert text != GOOD
    with pytest.raises(postroom.ConfigError) as caught:
        parse_bot(text, source="bot.yaml")
    message = str(caught.value)
    assert field in message and words in message
    if line is not None:
        assert f"(line {line})" in message


def test_bot_check_and_schema_from_the_command_line(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    checked = subprocess.run([POSTROOM, "bot", "check", str(good), "--json"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["steps"] == ["save_attachments", "reply", "move"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("move: Processed", "move: {fodler: Processed}"))
    refused = subprocess.run([POSTROOM, "bot", "check", str(bad), "--json"], capture_output=True, text=True)
    assert refused.returncode == 3
    error = json.loads(refused.stdout)["error"]
    assert error["line"] == 9 and error["field"] == "steps[2].move.fodler"
    assert "Traceback" not in refused.stderr
    schema = json.loads(subprocess.run([POSTROOM, "bot", "schema"], capture_output=True, text=True).stdout)
    step_names = {next(iter(choice["properties"])) for choice in schema["properties"]["steps"]["items"]["oneOf"]}
    assert {"save_attachments", "reply", "forward", "send", "move", "mark", "delete", "python", "command"} <= step_names


def test_an_insecure_password_in_a_bot_file_is_named_with_its_line(tmp_path: Path) -> None:
    text = GOOD.replace(
        "session: {profile: invoices}",
        "session:\n  protocol: imap\n  host: imap.example.com\n  auth: {mode: basic, username: u, password: hunter2}",
    )
    with pytest.warns(postroom.InsecureSecretWarning, match=r"session.auth.password \(line 5\)") as caught:
        definition = parse_bot(text, source="bot.yaml")
    assert all("hunter2" not in str(w.message) for w in caught)
    assert definition.sessions[0].settings is not None
    assert "hunter2" not in repr(definition.sessions[0])  # the spec keeps the reference, never shows the value


# -- each message once ---------------------------------------------------------------------------------------


def test_a_bot_processes_each_message_once_and_a_rerun_does_nothing(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 31))
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, workers=3)
    moves: list[int] = []  # messages per IMAP move call
    original_move = ImapWriting.move

    def counting_move(self: ImapWriting, keys: list[ImapKey], folder: str) -> list[ItemResult]:
        moves.append(len(keys))
        return original_move(self, keys, folder)

    monkeypatch.setattr(ImapWriting, "move", counting_move)
    first = LocalRunner(load_bot(path)).run()
    assert first.exit_code == 0, first.to_dict()
    assert sum(moves) == 30 and len(moves) <= 6, moves  # the last step moves each claimed batch at once
    assert (first.new, first.outcome.done, first.outcome.failed) == (30, 30, 0)
    assert sorted(_mine(smtp, messages).values()) == [1] * 30
    saved = sorted((tmp_path / "saved" / "INBOX").iterdir())
    assert [p.name for p in saved] == sorted(f"invoice-{n}.pdf" for n in range(1, 31))
    assert _folder_count(dovecot, mailbox_user, "Processed") == 30
    assert _folder_count(dovecot, mailbox_user, "INBOX") == 0

    again = LocalRunner(load_bot(path)).run()
    assert (again.new, again.outcome.done, again.exit_code) == (0, 0, 0)
    assert sorted(_mine(smtp, messages).values()) == [1] * 30
    assert len(list((tmp_path / "saved" / "INBOX").iterdir())) == 30
    assert again.counts == {"seen": 0, "claimed": 0, "done": 30, "failed": 0}


@pytest.mark.parametrize("sent_copy", ["server", "client"])
def test_killed_halfway_then_run_again_finishes_with_no_duplicate(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path, sent_copy: str
) -> None:
    """kill -9 mid-run, then run again. Where the server files a copy of what it sends (Gmail, Microsoft 365),
    every message ends done with one reply; where postroom files the copy itself, a reply caught between
    handing over its content and the server's OK cannot be told apart and is held, never sent twice."""
    messages = fill_mailbox(dovecot, mailbox_user, range(100, 160))
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, workers=2, sent_copy=sent_copy)
    environment = {**os.environ, **PASSWORD_ENV}
    smtp.sent_copy = sent_copy == "server"
    try:
        process = subprocess.Popen([POSTROOM, "run", str(path)], env=environment, cwd=tmp_path, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(_mine(smtp, messages)) < 15 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
        halfway = len(_mine(smtp, messages))
        assert 15 <= halfway < 60
        rerun = subprocess.run(
            [POSTROOM, "run", str(path), "--json"], env=environment, cwd=tmp_path, capture_output=True
        )
    finally:
        smtp.sent_copy = False
    report = json.loads(rerun.stdout)
    replies = _mine(smtp, messages)
    assert max(replies.values()) == 1  # never a second reply
    held = report["failed"]
    assert "Traceback" not in rerun.stderr.decode()
    if sent_copy == "server":
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert len(replies) == 60 and held == 0
    else:
        assert held <= 2  # at most the one message each worker was handing over when killed
        assert len(replies) >= 60 - held
        assert report["ledger"]["done"] == 60 - held
    assert _folder_count(dovecot, mailbox_user, "Processed") == 60 - held
    files = sorted(p.name for p in (tmp_path / "saved" / "INBOX").iterdir())
    assert files == sorted(f"invoice-{n}.pdf" for n in range(100, 160))  # each once, no "(2)", no leftovers
    for n in range(100, 160):
        assert (tmp_path / "saved" / "INBOX" / f"invoice-{n}.pdf").read_bytes().startswith(b"%PDF-1.4 invoice")


def test_a_new_uidvalidity_keeps_done_messages_done(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    """A bot that leaves mail in place (saves and marks read): after the folder is renumbered, the messages it
    did are matched again by Message-ID, date and size, and only the new one is processed."""
    fill_mailbox(dovecot, mailbox_user, range(1, 11))
    steps = [{"save_attachments": "saved/"}, {"mark": "read"}]
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, steps=steps)
    assert LocalRunner(load_bot(path)).run().outcome.done == 10
    dovecot.renumber(mailbox_user)
    dovecot.deliver(mailbox_user, invoice(11, mailbox_user))
    second = LocalRunner(load_bot(path)).run()
    assert (second.new, second.outcome.done) == (1, 1), second.to_dict()
    assert len(list((tmp_path / "saved").iterdir())) == 11
    ledger = Ledger.open(load_bot(path).ledger)
    status = ledger.status("invoices")
    assert status["counts"]["done"] == 11
    assert (
        "UIDVALIDITY changed" in status["mailboxes"][0]["notice"]
        and "10 known message(s)" in status["mailboxes"][0]["notice"]
    )


# -- mail whose delivery is unknown ---------------------------------------------------------------------------


def _cut_after_data(dovecot: Dovecot, smtp: SmtpServerUnderTest) -> object:
    assert dovecot.certs is not None
    certs = dovecot.certs
    rule = CutRule(pattern=rb"\r\n\.\r\n", when="after", times=1)
    return cutting_proxy(smtp.ssl_port, certs.cert_file, certs.key_file, certs.ca_file, rules=[rule])


def test_a_reply_cut_after_its_data_is_held_when_no_copy_can_tell(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 4))
    with _cut_after_data(dovecot, smtp) as proxy:  # type: ignore[attr-defined]
        steps = [{"reply": {"body": "Got it", "save_to_sent": False}}, {"move": "Processed"}]
        path = bot_file(
            tmp_path, dovecot, users=[mailbox_user], smtp_port=proxy.port, steps=steps, workers=1, sent_copy="none"
        )
        report = LocalRunner(load_bot(path)).run()
    assert proxy.cuts == 1
    assert (report.outcome.done, report.outcome.failed, report.exit_code) == (2, 1, 1)
    replies = _mine(smtp, messages)
    assert sorted(replies.values()) == [1, 1, 1]  # the cut one was delivered, and was not sent again
    status = Ledger.open(load_bot(path).ledger).status("invoices")
    (held,) = status["failed"]
    assert "may have been delivered" in held["error"] and held["next_try_in"] is None
    # a person checked: it did arrive. Forgetting nothing, a retry without --resend keeps it held
    assert Ledger.open(load_bot(path).ledger).retry("invoices") == 1
    again = LocalRunner(load_bot(path)).run()
    assert again.outcome.failed == 1 and sorted(_mine(smtp, messages).values()) == [1, 1, 1]


def test_a_reply_cut_after_its_data_is_found_in_sent_when_the_server_files_copies(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 4))
    smtp.sent_copy = True
    try:
        with _cut_after_data(dovecot, smtp) as proxy:  # type: ignore[attr-defined]
            steps = [{"reply": {"body": "Got it", "save_to_sent": False}}, {"move": "Processed"}]
            path = bot_file(
                tmp_path, dovecot, users=[mailbox_user], smtp_port=proxy.port, steps=steps, sent_copy="server"
            )
            report = LocalRunner(load_bot(path)).run()
    finally:
        smtp.sent_copy = False
    assert proxy.cuts == 1
    assert (report.outcome.done, report.outcome.failed, report.exit_code) == (3, 0, 0), report.to_dict()
    assert sorted(_mine(smtp, messages).values()) == [1, 1, 1]
    assert _folder_count(dovecot, mailbox_user, "Processed") == 3


# -- failures, retries, the Python API ----------------------------------------------------------------------


def test_a_failing_step_is_retried_then_moved_to_failed_and_retry_sends_it_again(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    fill_mailbox(dovecot, mailbox_user, range(1, 3))
    flag = tmp_path / "broken"
    flag.write_text("yes")
    checker = tmp_path / "check.py"
    checker.write_text(
        "import json, os, pathlib, sys\n"
        "doc = json.load(sys.stdin)\n"
        "assert doc['message']['subject'].startswith('Invoice') and os.environ['POSTROOM_IDEMPOTENCY_KEY']\n"
        f"sys.exit(3 if pathlib.Path({str(flag)!r}).exists() else 0)\n"
    )
    steps = [{"command": [sys.executable, str(checker)]}, {"move": "Processed"}]
    path = bot_file(
        tmp_path,
        dovecot,
        users=[mailbox_user],
        smtp_port=smtp.ssl_port,
        steps=steps,
        on_failure={"retries": 1, "backoff": "50ms", "then": "move", "folder": "Failed"},
    )
    first = LocalRunner(load_bot(path)).run()  # tried, tried again after the 50ms backoff, then moved
    assert (first.outcome.done, first.outcome.retrying, first.outcome.failed, first.exit_code) == (0, 2, 2, 1)
    assert _folder_count(dovecot, mailbox_user, "Failed") == 2
    failed = Ledger.open(load_bot(path).ledger).status("invoices")["failed"]
    assert all("exited with 3" in f["error"] and "moved to Failed" in f["error"] for f in failed)


def test_the_python_api_runs_a_decorated_step_and_its_reply_goes_once(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 6))
    config = server_config(dovecot, smtp_host="localhost", smtp_port=smtp.ssl_port, smtp_security="ssl")
    bot = Bot(
        "api-bot",
        session=config,
        loop={"subject": "Invoice", "order": "oldest"},
        on_failure=FailurePolicy(retries=2, backoff=0.01),
        ledger=f"sqlite:///{tmp_path / 'ledger.db'}",
        variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": SHARED_PASSWORD},
    )
    tries: dict[str, int] = {}

    @bot.step
    def handle(mail: postroom.Message, context: object) -> None:
        context.reply(f"Received {mail.subject}")  # type: ignore[attr-defined]
        tries[mail.message_id] = tries.get(mail.message_id, 0) + 1
        if tries[mail.message_id] == 1:
            raise RuntimeError("the ERP was down")  # after the reply: the retry must not reply again
        context.move("Processed")  # type: ignore[attr-defined]

    report = bot.run()  # each message: tried, failed after its reply, tried again 10ms later: done
    assert (report.outcome.retrying, report.outcome.done) == (5, 5), report.to_dict()
    assert sorted(_mine(smtp, messages).values()) == [1] * 5
    assert set(tries.values()) == {2}
    assert _folder_count(dovecot, mailbox_user, "Processed") == 5


def test_two_runners_on_one_ledger_process_each_message_once(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 41))
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, workers=2)
    reports = []

    def run() -> None:
        reports.append(LocalRunner(load_bot(path)).run())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(r.outcome.done for r in reports) == 40
    assert sorted(_mine(smtp, messages).values()) == [1] * 40
    assert _folder_count(dovecot, mailbox_user, "Processed") == 40


# -- watching ------------------------------------------------------------------------------------------------


def _watch_until_replied(
    path: Path, dovecot: Dovecot, smtp: SmtpServerUnderTest, user: str, *, folder: str = "INBOX"
) -> float:
    """Run the bot with --watch, deliver one invoice into ``folder``, and return seconds from delivery to its reply."""
    sent = invoice(7, user)
    with watching(LocalRunner(load_bot(path))):
        time.sleep(1.5)  # the watcher is idling by now
        dovecot.deliver(user, sent, folder=folder)
        took = until(lambda: _mine(smtp, [sent]), 15)
    assert sorted(_mine(smtp, [sent]).values()) == [1]
    return took


def test_watch_processes_new_mail_as_idle_reports_it(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    steps = [{"reply": "Got {subject}"}, {"move": "Processed"}]
    path = bot_file(
        tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, steps=steps, watch={"reconcile": "60s"}
    )
    took = _watch_until_replied(path, dovecot, smtp, mailbox_user)
    assert took < 3, f"IDLE should have reported it at once (the reconcile is a minute away), took {took:.1f}s"
    status = Ledger.open(load_bot(path).ledger).status("invoices")
    assert status["mailboxes"][0]["trigger"] == "idle"


def test_watch_finds_mail_a_silent_idle_never_reported_within_the_reconcile_interval(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    assert dovecot.certs is not None
    certs = dovecot.certs
    steps = [{"reply": "Got {subject}"}, {"move": "Processed"}]
    with cutting_proxy(
        dovecot.ports["imaps"], certs.cert_file, certs.key_file, certs.ca_file, swallow=rb"\* \d+ (EXISTS|RECENT)\r\n"
    ) as proxy:
        path = bot_file(
            tmp_path,
            dovecot,
            users=[mailbox_user],
            smtp_port=smtp.ssl_port,
            steps=steps,
            imap_port=proxy.port,
            watch={"reconcile": "2s"},
        )
        took = _watch_until_replied(path, dovecot, smtp, mailbox_user)
    assert proxy.swallowed >= 1  # the push really was lost
    assert took < 6, f"the 2s reconcile should have found it, took {took:.1f}s"


def test_watch_over_subfolders_finds_mail_that_arrives_in_a_subfolder(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    """IDLE and STATUS watch one folder: a loop over subfolders must not take an unchanged INBOX for "nothing new"."""
    dovecot.deliver(mailbox_user, b"Subject: not an invoice\r\n\r\nhello\r\n", folder="INBOX/Vendors")
    steps = [{"reply": "Got {subject}"}, {"move": "Processed"}]
    path = bot_file(
        tmp_path,
        dovecot,
        users=[mailbox_user],
        smtp_port=smtp.ssl_port,
        steps=steps,
        watch={"reconcile": "2s"},
        loop={"folder": "INBOX", "include_subfolders": True, "subject": r"^Invoice (\d+) from", "regex": True},
    )
    took = _watch_until_replied(path, dovecot, smtp, mailbox_user, folder="INBOX/Vendors")
    assert took < 6, f"the 2s reconcile should have listed the subfolders, took {took:.1f}s"


def test_an_idle_ends_soon_after_it_is_asked_to_stop(imap: postroom.Session) -> None:
    """A bot stopped by Ctrl-C or its service manager must not wait out IDLE's reconcile interval."""
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    changed = imap.call(lambda mailbox: cast(Watches, mailbox).wait_for_change("INBOX", 60.0, stop))
    assert changed is False
    assert time.monotonic() - started < 3
    assert imap.state == "open"  # ended with DONE, not by dropping the connection
    assert imap.call(lambda mailbox: cast(Watches, mailbox).folder_state("INBOX"))


def test_a_watching_bot_stops_in_seconds_while_it_idles(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, watch={"reconcile": "60s"})
    with watching(LocalRunner(load_bot(path))):  # asserts the stop took under STOPS_WITHIN seconds
        time.sleep(2)  # idling by now, a minute from its reconcile


def test_connections_have_tcp_keepalive_on(imap: postroom.Session) -> None:
    """So an IDLE whose connection a NAT dropped silently is found dead within minutes."""
    import socket

    sock = imap._mailbox._client.sock  # type: ignore[union-attr]
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60


# -- the example bot, on the embedded server ----------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "invoice-bot.yaml"


def _sandbox_replies(home: Path) -> dict[str, int]:
    delivered = home / "data" / "sandbox" / "delivered"
    files = sorted(delivered.glob("*.eml")) if delivered.is_dir() else []
    return replies_by_original([("", [], path.read_bytes()) for path in files])


def test_the_example_bot_runs_on_the_embedded_server_then_does_nothing(isolated_home: Path, tmp_path: Path) -> None:
    bot = tmp_path / "invoice-bot.yaml"
    bot.write_text(EXAMPLE.read_text())
    first = subprocess.run([POSTROOM, "run", str(bot), "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (report["new"], report["done"], report["ledger"]["done"]) == (4, 4, 4)
    assert sorted(p.name for p in (tmp_path / "invoices").iterdir()) == [f"invoice-{n}.pdf" for n in range(1041, 1045)]
    assert sorted(_sandbox_replies(isolated_home).values()) == [1, 1, 1, 1]
    assert (isolated_home / "data" / "ledger.sqlite3").is_file()
    again = subprocess.run([POSTROOM, "run", str(bot), "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["done"] == 0
    assert sorted(_sandbox_replies(isolated_home).values()) == [1, 1, 1, 1]
    status = subprocess.run([POSTROOM, "bot", "status", str(bot)], capture_output=True, text=True, cwd=tmp_path)
    assert "4 done" in status.stdout and "[ok]" in status.stdout


def test_the_example_bot_killed_halfway_finishes_on_the_next_run_with_no_duplicate_reply(
    isolated_home: Path, tmp_path: Path
) -> None:
    from postroom.runner.sessions import SANDBOX_USER
    from postroom.sandbox.server import SandboxServer

    store = isolated_home / "data" / "sandbox"
    store.mkdir(parents=True)
    (store / "password").write_text("sandbox-secret")
    invoices = [("INBOX", invoice(n, SANDBOX_USER), False) for n in range(1, 81)]
    with SandboxServer(store / "run", user=SANDBOX_USER, password="sandbox-secret", store=store) as server:
        server.deliver(invoices)  # a busier morning than the sample mail
    bot = tmp_path / "invoice-bot.yaml"
    bot.write_text(EXAMPLE.read_text().replace(r"'^Invoice (\d+) from (?!.*\(paid\))'", r"'^Invoice (\d+) from'"))
    process = subprocess.Popen([POSTROOM, "run", str(bot)], cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(_sandbox_replies(isolated_home)) < 10 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    assert process.poll() is None, "the run ended before it could be killed"
    process.kill()
    process.wait()
    assert 10 <= len(_sandbox_replies(isolated_home)) < 80
    rerun = subprocess.run(
        [POSTROOM, "run", str(bot), "--json", "--log-json"], capture_output=True, text=True, cwd=tmp_path
    )
    assert rerun.returncode == 0, rerun.stderr
    records = [json.loads(line) for line in rerun.stderr.splitlines() if line.startswith("{")]
    assert {"bot", "run", "message_key", "step"} <= set(next(r for r in records if "step" in r))
    replies = _sandbox_replies(isolated_home)
    assert len(replies) == 80 and set(replies.values()) == {1}
    assert len([p for p in (tmp_path / "invoices").iterdir() if not p.name.startswith(".")]) == 80


def test_a_message_that_arrived_after_the_folder_was_selected_is_found_by_its_key(
    dovecot: Dovecot, mailbox_user: str, imap: postroom.Session
) -> None:
    """A worker's connection selected INBOX before the message came: its key must still find it."""
    dovecot.deliver(mailbox_user, invoice(1, mailbox_user))
    assert len(list(postroom.messages(imap))) == 1  # INBOX is selected now
    dovecot.deliver(mailbox_user, invoice(2, mailbox_user))
    other = postroom.connect(
        "other", server_config(dovecot), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": SHARED_PASSWORD}
    )
    with other:
        newest = next(iter(postroom.messages(other, order="newest")))
    found = postroom.get_message(imap, newest.key)
    assert found.subject == "Invoice 2 from Vendor 2"


def test_two_mailboxes_with_the_same_uidvalidity_keep_their_messages_apart(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, tmp_path: Path
) -> None:
    """Dovecot's UIDVALIDITY is a timestamp: two mailboxes made in the same second share it, so their keys
    repeat. Each message must still be answered and saved from its own mailbox."""
    users = [f"twin{i}-{time.time_ns()}@example.test" for i in range(2)]
    messages = []
    for index, user in enumerate(users):
        dovecot.add_user(user)
        messages += fill_mailbox(dovecot, user, range(index * 100 + 1, index * 100 + 11))
    path = bot_file(tmp_path, dovecot, users=users, smtp_port=smtp.ssl_port, workers=2)
    report = LocalRunner(load_bot(path)).run()
    assert report.outcome.done == 20, report.to_dict()
    assert sorted(_mine(smtp, messages).values()) == [1] * 20
    for path_ in (tmp_path / "saved" / "INBOX").iterdir():
        number = int(path_.name.removeprefix("invoice-").removesuffix(".pdf"))
        assert path_.read_bytes() == (f"%PDF-1.4 invoice {number}\n" + "x" * (200 + number % 97)).encode()


def test_status_retry_and_forget_from_the_command_line_and_metrics(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    import urllib.request

    from postroom.runner.metrics import serve_metrics

    fill_mailbox(dovecot, mailbox_user, range(1, 6))
    steps = [{"save_attachments": "saved/"}, {"mark": "read"}]
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, steps=steps)
    port = serve_metrics(0)
    assert LocalRunner(load_bot(path)).run().outcome.done == 5
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'postroom_messages_total{bot="invoices",outcome="done"}' in metrics
    assert 'postroom_step_seconds_count{bot="invoices",step="save_attachments"}' in metrics

    environment = {**os.environ, **PASSWORD_ENV}
    status = subprocess.run([POSTROOM, "bot", "status", str(path), "--json"], capture_output=True, env=environment)
    found = json.loads(status.stdout)
    assert found["ok"] and found["counts"]["done"] == 5 and found["mailboxes"][0]["healthy"] is True
    dry = subprocess.run(
        [POSTROOM, "bot", "forget", str(path), "--state", "done", "--dry-run", "--json"],
        capture_output=True,
        env=environment,
    )
    assert len(json.loads(dry.stdout)["would_forget"]) == 5
    assert Ledger.open(load_bot(path).ledger).counts("invoices")["done"] == 5  # a dry run removes nothing
    gone = subprocess.run(
        [POSTROOM, "bot", "forget", str(path), "--state", "done", "--json"], capture_output=True, env=environment
    )
    assert len(json.loads(gone.stdout)["forgot"]) == 5
    again = LocalRunner(load_bot(path)).run()  # forgotten: the messages count as new and are done again
    assert again.outcome.done == 5
    saved = sorted(p.name for p in (tmp_path / "saved").iterdir())
    assert len(saved) == 10 and "invoice-1 (2).pdf" in saved  # kept both: a new run, not a repeat
    retried = subprocess.run([POSTROOM, "bot", "retry", str(path), "--json"], capture_output=True, env=environment)
    assert json.loads(retried.stdout)["requeued"] == 0


def test_deployments_that_share_no_ledger_claim_on_the_server_and_answer_each_message_once(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    """server_claim: a keyword set with CONDSTORE's conditional STORE decides which deployment takes a message."""
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 41))
    runners = []
    for side in ("a", "b"):
        folder = tmp_path / side
        folder.mkdir()
        path = bot_file(
            folder,
            dovecot,
            users=[mailbox_user],
            smtp_port=smtp.ssl_port,
            workers=2,
            server_claim=True,
            ledger=f"sqlite:///{folder / 'own-ledger.db'}",
        )
        runners.append(LocalRunner(load_bot(path)))
    reports = []
    threads = [threading.Thread(target=lambda r=runner: reports.append(r.run())) for runner in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(r.outcome.done for r in reports) == 40, [r.to_dict() for r in reports]
    assert sorted(_mine(smtp, messages).values()) == [1] * 40
    assert _folder_count(dovecot, mailbox_user, "Processed") == 40
    assert all(r.exit_code == 0 for r in reports)


def test_a_claim_on_the_server_whose_reply_was_cut_off_stays_this_deployments(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    """The conditional STORE ran, the connection dropped before its OK: the retry finds its own keyword and goes
    on (it used to read the keyword as another deployment's and leave the message to nobody)."""
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 4))
    certs = dovecot.certs
    assert certs is not None
    cut = CutRule(rb"UNCHANGEDSINCE", when="after", times=2, spacing=2)
    with cutting_proxy(dovecot.ports["imaps"], certs.cert_file, certs.key_file, certs.ca_file, rules=[cut]) as proxy:
        path = bot_file(
            tmp_path,
            dovecot,
            users=[mailbox_user],
            smtp_port=smtp.ssl_port,
            server_claim=True,
            imap_port=proxy.port,
        )
        report = LocalRunner(load_bot(path)).run()
    assert proxy.cuts == 2
    assert (report.outcome.done, report.outcome.skipped) == (3, 0), report.to_dict()
    assert sorted(_mine(smtp, messages).values()) == [1, 1, 1]
    assert _folder_count(dovecot, mailbox_user, "Processed") == 3


def test_a_part_of_a_message_that_arrived_after_the_folder_was_selected_can_be_read(
    dovecot: Dovecot, mailbox_user: str, imap: postroom.Session, tmp_path: Path
) -> None:
    """The worker's connection has INBOX selected; the watcher's found a new message: its attachment streams."""
    dovecot.deliver(mailbox_user, invoice(1, mailbox_user))
    assert len(list(postroom.messages(imap))) == 1
    dovecot.deliver(mailbox_user, invoice(2, mailbox_user))
    variables = {"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": SHARED_PASSWORD}
    with postroom.connect("watcher", server_config(dovecot), variables=variables) as other:
        newest = next(iter(postroom.messages(other, order="newest")))
        summary = newest.summary  # what a watcher hands a worker of the same process
    from postroom.actions.loop import SessionSource

    found = postroom.Message(summary, SessionSource(imap))
    saved = found.save_attachments(tmp_path)
    assert [s.path.name for s in saved] == ["invoice-2.pdf"] and saved[0].size > 200


def test_run_on_a_terminal_shows_listing_and_processing_bars_and_none_when_piped(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    import pty

    from postroom.runner.engine import DISCOVER_CHUNK

    count = DISCOVER_CHUNK + 20  # two chunks of summaries
    dovecot.deliver_many(mailbox_user, [invoice(n, mailbox_user) for n in range(1, count + 1)])
    steps = [{"mark": "read"}]
    environment = {**os.environ, **PASSWORD_ENV, "COLUMNS": "120", "TERM": "xterm-256color"}
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, steps=steps)
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [POSTROOM, "run", str(path)], stdout=subprocess.PIPE, stderr=follower, env=environment, cwd=tmp_path
        )
        os.close(follower)
        screen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            screen += chunk
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
    finally:
        os.close(leader)
    text = screen.decode("utf-8", "replace")
    assert f"listing imap://{mailbox_user}" in text
    assert "processing" in text
    assert text.count(f"{count}/{count}") >= 2  # both bars ran to the end
    assert f"{count} done" in out.decode()  # the summary stays on stdout, without bars
    assert b"\x1b" not in out

    piped = subprocess.run([POSTROOM, "run", str(path)], capture_output=True, env=environment, cwd=tmp_path)
    assert piped.returncode == 0
    assert b"listing" not in piped.stderr and b"processing" not in piped.stderr
