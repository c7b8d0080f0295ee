"""The exactly-once proof, shared by the suite (small) and ``bench/exactly_once.py`` (10,000 messages).

N Celery workers over M mailboxes on Dovecot, a PostgreSQL ledger, a Redis (or RabbitMQ) broker. The bot saves each
attachment, replies, and moves the message to Processed. Meanwhile: a random worker is killed with
SIGKILL every few seconds and started again; IMAP and SMTP connections are cut at random points through
proxies; the broker is restarted once; one mailbox is renumbered (new UIDVALIDITY) once. Afterwards every
message must be in Processed once, every reply delivered once (counted on the receiving side by
In-Reply-To), every attachment saved once and whole, and the ledger must agree.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import postroom
from tests.bots import PASSWORD_ENV, bot_file, fill_mailbox, replies_by_original
from tests.conftest import server_config
from tests.servers.cutting_proxy import CutRule, cutting_proxy
from tests.servers.dovecot import SHARED_PASSWORD, Dovecot
from tests.servers.postgres import PostgresUnderTest
from tests.servers.smtp import SmtpServerUnderTest

__all__ = ["ProofResult", "run_proof"]

POSTROOM = str(Path(sys.executable).with_name("postroom"))


class Broker(Protocol):
    """A Celery broker the proof can restart (tests/servers/redis.py, tests/servers/rabbitmq.py)."""

    @property
    def url(self) -> str: ...

    def restart(self) -> None: ...


@dataclass
class ProofResult:
    messages: int
    seconds: float
    kills: int = 0
    broker_restarts: int = 0
    renumbered: int = 0
    imap_cuts: int = 0
    smtp_cuts: int = 0
    in_processed: dict[str, int] = field(default_factory=dict)
    left_in_inbox: int = 0
    replies: dict[str, int] = field(default_factory=dict)
    files: int = 0
    files_whole: int = 0
    ledger: dict[str, int] = field(default_factory=dict)
    scheduler_exit: int | None = None
    originals: set[str] = field(default_factory=set)
    leftovers: list[str] = field(default_factory=list)
    scheduler_report: dict[str, Any] = field(default_factory=dict)
    scheduler_hung: bool = False
    explain: list[tuple[str, ...]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What breaks exactly-once (empty when the proof holds)."""
        found = []
        twice = {m: n for m, n in self.in_processed.items() if n != 1}
        if twice or len(self.in_processed) != self.messages:
            found.append(f"Processed holds {len(self.in_processed)} distinct of {self.messages}, not once: {twice}")
        if self.left_in_inbox:
            found.append(f"{self.left_in_inbox} left in INBOX")
        mine = {m: n for m, n in self.replies.items() if m in self.originals}
        if len(mine) != self.messages or any(n != 1 for n in mine.values()):
            found.append(f"replies: {len(mine)} originals answered, counts {sorted(set(mine.values()))}")
        if self.files != self.messages or self.files_whole != self.messages:
            found.append(f"files: {self.files} saved, {self.files_whole} whole, of {self.messages}")
        if self.scheduler_hung:
            found.append("`postroom run --celery` reported, then did not exit")
        if self.leftovers:
            found.append(f"temporary files left: {self.leftovers}")
        if self.ledger.get("done") != self.messages or sum(self.ledger.values()) != self.messages:
            found.append(f"ledger: {self.ledger}")
        return found

    def table(self) -> str:
        mine = {m: n for m, n in self.replies.items() if m in self.originals}
        return "\n".join(
            [
                f"messages                {self.messages}",
                f"wall                    {self.seconds:.1f} s",
                f"workers killed (-9)     {self.kills}",
                f"broker restarts         {self.broker_restarts}",
                f"UIDVALIDITY bumps       {self.renumbered}",
                f"IMAP connections cut    {self.imap_cuts}",
                f"SMTP connections cut    {self.smtp_cuts}",
                f"in Processed once       {sum(1 for n in self.in_processed.values() if n == 1)}",
                f"left in INBOX           {self.left_in_inbox}",
                f"replies delivered once  {sum(1 for n in mine.values() if n == 1)} (twice or more: "
                f"{sum(1 for n in mine.values() if n > 1)})",
                f"attachments saved whole {self.files_whole} of {self.files} files",
                f"ledger                  {self.ledger}",
                *(f"  twice: {row}" for row in self.explain),
            ]
        )


class _Launcher:
    """Workers started (and started again) by ``tests/worker_launcher.py``, a single-threaded process."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("worker_launcher.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def worker(self, bot: Path, environment: dict[str, str], log: Path) -> int:
        """Start ``postroom worker`` for ``bot``, logging to ``log``; its pid (and process group)."""
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        request = {
            "args": [POSTROOM, "worker", str(bot), "--pool", "threads", "--concurrency", "2"],
            "env": environment,
            "cwd": str(bot.parent),
            "log": str(log),
        }
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        answer = json.loads(self._process.stdout.readline())
        if "pid" not in answer:
            raise RuntimeError(f"cannot start a worker: {answer.get('error')}")
        return int(answer["pid"])

    def close(self) -> None:
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                pipe.close()
        self._process.wait(30)


def _kill(pid: int) -> None:
    """SIGKILL the worker's whole process group, and wait until it is gone (the launcher reaps it)."""
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    raise RuntimeError(f"worker {pid} is still there 30 s after SIGKILL")


def run_proof(
    dovecot: Dovecot,
    smtp: SmtpServerUnderTest,
    postgres: PostgresUnderTest,
    broker: Broker,
    workdir: Path,
    *,
    mailboxes: int = 4,
    per_mailbox: int = 50,
    workers: int = 4,
    kill_every: tuple[float, float] = (2.0, 4.0),
    timeout: float = 600.0,
    seed: int = 7,
) -> ProofResult:
    chance = random.Random(seed)
    users = [f"proof-{seed}-{os.getpid()}-{i}-{time.time_ns() % 10**6}@example.test" for i in range(mailboxes)]
    sent: list[bytes] = []
    for index, user in enumerate(users):
        dovecot.add_user(user)
        sent += fill_mailbox(dovecot, user, range(index * per_mailbox + 1, (index + 1) * per_mailbox + 1))
    originals = {str(email.message_from_bytes(raw)["Message-ID"]).strip() for raw in sent}
    total = len(sent)
    assert dovecot.certs is not None
    certs = dovecot.certs
    smtp_rules = [
        CutRule(pattern=rb"\r\n\.\r\n", when="after", times=max(2, total // 60), spacing=23),  # after DATA: unknown
        CutRule(pattern=rb"MAIL FROM", when="before", times=max(2, total // 60), spacing=31),  # before: nothing went
    ]
    database = postgres.create_database(f"proof_{seed}_{time.time_ns() % 10**9}")
    result = ProofResult(messages=total, seconds=0.0, originals=originals)
    launcher = _Launcher()  # before the proxies' threads
    smtp.sent_copy = True
    started = time.monotonic()
    with (
        cutting_proxy(
            dovecot.ports["imaps"], certs.cert_file, certs.key_file, certs.ca_file, every=(4_000, 80_000), seed=seed
        ) as imap_proxy,
        cutting_proxy(
            smtp.ssl_port, certs.cert_file, certs.key_file, certs.ca_file, rules=smtp_rules, seed=seed
        ) as smtp_proxy,
    ):
        bot = bot_file(
            workdir,
            dovecot,
            name="proof",
            users=users,
            smtp_port=smtp_proxy.port,
            imap_port=imap_proxy.port,
            ledger=database,
            broker=broker.url,
            sent_copy="server",
            workers=2,
            claim_lease="8s",
            on_failure={"retries": 50, "backoff": "200ms", "max_backoff": "2s"},
            watch={"reconcile": "2s"},
        )
        environment = {**os.environ, **PASSWORD_ENV}
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        pool = [launcher.worker(bot, environment, logs / f"worker-{i}.log") for i in range(workers)]
        with (logs / "scheduler.json").open("wb") as output, (logs / "scheduler.log").open("ab") as errors:
            scheduler = subprocess.Popen(
                [POSTROOM, "run", str(bot), "--celery", "--json"],
                env=environment,
                cwd=workdir,
                stdout=output,
                stderr=errors,
            )
        next_kill = time.monotonic() + chance.uniform(*kill_every)
        try:
            reported_at: float | None = None
            while scheduler.poll() is None and time.monotonic() - started < timeout:
                time.sleep(0.1)
                if reported_at is None and (logs / "scheduler.json").stat().st_size:
                    reported_at = time.monotonic()
                if reported_at is not None and time.monotonic() - reported_at > 20:
                    result.scheduler_hung = True  # it reported, then did not exit
                    break
                done = _done(database)
                if not result.broker_restarts and done >= total * 0.25:
                    broker.restart()
                    result.broker_restarts += 1
                if not result.renumbered and done >= total * 0.5:
                    dovecot.renumber(users[1])
                    result.renumbered += 1
                if time.monotonic() >= next_kill:
                    victim = chance.randrange(len(pool))
                    _kill(pool[victim])
                    result.kills += 1
                    pool[victim] = launcher.worker(bot, environment, logs / f"worker-{victim}.log")
                    next_kill = time.monotonic() + chance.uniform(*kill_every)
        finally:
            if scheduler.poll() is None:
                scheduler.kill()
            scheduler.wait()
            result.scheduler_report = _report(logs / "scheduler.json")
            for pid in pool:
                _kill(pid)
            launcher.close()
            smtp.sent_copy = False
        result.scheduler_exit = scheduler.returncode
        result.imap_cuts, result.smtp_cuts = imap_proxy.cuts, smtp_proxy.cuts
    result.seconds = time.monotonic() - started
    _check(result, dovecot, users, smtp, workdir, database)
    return result


def _report(path: Path) -> dict[str, Any]:
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found


def _done(database: str) -> int:
    import sqlalchemy

    engine = sqlalchemy.create_engine(database)
    try:
        with engine.connect() as db:
            return int(
                db.execute(sqlalchemy.text("SELECT count(*) FROM postroom_item WHERE state = 'done'")).scalar_one()
            )
    except Exception:
        return 0
    finally:
        engine.dispose()


def _check(
    result: ProofResult, dovecot: Dovecot, users: list[str], smtp: SmtpServerUnderTest, workdir: Path, database: str
) -> None:
    for user in users:
        variables = {"MAILBOX_USER": user, "MAILBOX_PASSWORD": SHARED_PASSWORD}
        with postroom.connect(f"check-{user}", server_config(dovecot), variables=variables) as session:
            for mail in postroom.messages(session, folder="Processed"):
                result.in_processed[mail.message_id] = result.in_processed.get(mail.message_id, 0) + 1
            result.left_in_inbox += sum(1 for _ in postroom.messages(session))
    result.replies = replies_by_original(smtp.received)
    saved = workdir / "saved" / "INBOX"
    files = list(saved.iterdir()) if saved.is_dir() else []
    result.leftovers = [p.name for p in files if p.name.startswith(".")]
    files = [p for p in files if not p.name.startswith(".")]
    result.files = len(files)
    for path in files:
        data = path.read_bytes()
        number = path.name.removeprefix("invoice-").removesuffix(".pdf")
        if number.isdigit() and data == (f"%PDF-1.4 invoice {number}\n" + "x" * (200 + int(number) % 97)).encode():
            result.files_whole += 1
    import sqlalchemy

    engine = sqlalchemy.create_engine(database)
    with engine.connect() as db:
        rows = db.execute(sqlalchemy.text("SELECT state, count(*) FROM postroom_item GROUP BY state")).all()
        twice = [m for m, n in result.replies.items() if n > 1 and m in result.originals]
        if twice:  # what the ledger knew about them, to tell why
            found = db.execute(
                sqlalchemy.text(
                    "SELECT i.key, i.fence, i.attempts, i.error, e.seq, e.kind, e.state, e.message_id, e.updated_at "
                    "FROM postroom_item i LEFT JOIN postroom_effect e ON e.item_id = i.id "
                    "WHERE i.message_id = ANY(:ids) ORDER BY i.id, e.seq"
                ),
                {"ids": twice[:5]},
            ).all()
            result.explain = [tuple(str(v) for v in row) for row in found]
    engine.dispose()
    result.ledger = {str(state): int(count) for state, count in rows}


def describe(result: ProofResult) -> dict[str, Any]:
    return {"problems": result.problems(), "table": result.table()}
