"""Bots benchmark: ``python -m bench.bots [--size 10000]``.

Starts its own Dovecot and SMTP server (the suite's harness) and measures, in one run:

- **ledger cost**: one worker of ``postroom run`` (SQLite ledger, journal, outbox) against the plain
  ``postroom.messages`` loop doing the same steps (save the attachment, reply, move to Processed), on
  identical mailboxes; and the same without the reply, where the ledger's share is largest;
- **scaling**: 1, 2 and 4 worker threads over 4 mailboxes, as messages per second, with the client's and
  Dovecot's CPU per message (this machine has 2 cores: more workers than cores wait on each other);
- **trigger latency** under IDLE: from a message's delivery to its reply arriving, median and 90th percentile.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from tests.bots import PASSWORD_ENV, bot_file, fill_mailbox, invoice, replies_by_original
from tests.conftest import server_config
from tests.servers.dovecot import SHARED_PASSWORD, Dovecot
from tests.servers.smtp import SmtpServerUnderTest, smtp_server

import postroom
from bench.run import dovecot_cpu
from postroom.runner import LocalRunner, load_bot

STEPS_WITH_REPLY: list[Any] = [
    {"save_attachments": {"folder": "saved/{folder}", "pattern": "*.pdf"}},
    {"reply": "Thank you for invoice {subject_match[1]}."},
    {"move": "Processed"},
]
STEPS_WITHOUT_REPLY: list[Any] = [STEPS_WITH_REPLY[0], STEPS_WITH_REPLY[2]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(self, dovecot: Dovecot, smtp: SmtpServerUnderTest, workdir: Path) -> None:
        self.dovecot = dovecot
        self.smtp = smtp
        self.workdir = workdir
        self.counter = 0

    def mailboxes(self, count: int, per_mailbox: int) -> list[str]:
        users = []
        for _ in range(count):
            self.counter += 1
            user = f"bench{self.counter}-{os.getpid()}@example.test"
            self.dovecot.add_user(user)
            fill_mailbox(self.dovecot, user, range(1, per_mailbox + 1))
            users.append(user)
        return users

    def measure(self, name: str, count: int, action: Any) -> dict[str, Any]:
        time.sleep(1.5)  # Dovecot reaps the last case's imap processes: their CPU is not counted here
        cpu, server, started = _cpu(), dovecot_cpu(self.dovecot), time.perf_counter()
        action()
        wall = time.perf_counter() - started
        client = _cpu() - cpu
        time.sleep(1.5)  # ... and this case's, which end with their connections, are counted
        server = dovecot_cpu(self.dovecot) - server
        row = {
            "case": name,
            "messages": count,
            "wall_s": round(wall, 2),
            "msg_per_s": round(count / wall, 1),
            "client_cpu_ms_per_msg": round(1000 * client / count, 2),
            "dovecot_cpu_ms_per_msg": round(1000 * server / count, 2),
        }
        print(
            f"{name:<26} {count:>6} msgs {wall:7.2f} s {count / wall:8.1f} msg/s   client CPU "
            f"{row['client_cpu_ms_per_msg']:5.2f} ms/msg  Dovecot CPU {row['dovecot_cpu_ms_per_msg']:5.2f} ms/msg",
            flush=True,
        )
        return row

    def plain(self, user: str, *, reply: bool) -> None:
        config = server_config(self.dovecot, smtp_host="localhost", smtp_port=self.smtp.ssl_port, smtp_security="ssl")
        variables = {"MAILBOX_USER": user, "MAILBOX_PASSWORD": SHARED_PASSWORD}
        out = self.workdir / f"plain-{user}"
        with postroom.connect("plain", config, variables=variables, replace=True) as session:
            postroom.create_folder(session, "Processed")
            for mail in postroom.messages(session, subject=r"^Invoice (\d+) from", regex=True, order="oldest"):
                mail.save_attachments(out, pattern="*.pdf")
                if reply:
                    number = mail.subject.split()[1]
                    postroom.reply(session, mail, f"Thank you for invoice {number}.", save_to_sent=True)
                postroom.move(session, mail, "Processed")

    def runner(self, users: list[str], *, steps: list[Any], workers: int, name: str) -> LocalRunner:
        folder = self.workdir / name
        folder.mkdir()
        path = bot_file(
            folder,
            self.dovecot,
            name=name,
            users=users,
            smtp_port=self.smtp.ssl_port,
            steps=steps,
            workers=workers,
            ledger=f"sqlite:///{folder / 'ledger.sqlite3'}",
        )
        return LocalRunner(load_bot(path))


def ledger_cost(bench: Bench, size: int, rounds: int) -> list[dict[str, Any]]:
    """The plain loop and one worker on identical fresh mailboxes, ``rounds`` times, taking turns at going
    first (a fresh mailbox's first loop builds Dovecot's caches, and single runs here vary by +-15%): the
    ratio of the median walls, and the client CPU per message each adds."""
    rows = []
    for steps, label in ((STEPS_WITHOUT_REPLY, "save+move"), (STEPS_WITH_REPLY, "save+reply+move")):
        reply = steps is STEPS_WITH_REPLY
        plains: list[dict[str, Any]] = []
        bots: list[dict[str, Any]] = []
        for round_ in range(rounds):
            plain_user, bot_user = bench.mailboxes(2, size)
            runner = bench.runner([bot_user], steps=steps, workers=1, name=f"ledger-{label.replace('+', '-')}-{round_}")
            cases = [
                (plains, f"plain loop ({label})", lambda u=plain_user, r=reply: bench.plain(u, reply=r)),
                (bots, f"postroom run, 1 worker ({label})", lambda r=runner: _run(r, size)),
            ]
            for kept, name, action in cases if round_ % 2 == 0 else reversed(cases):
                kept.append(bench.measure(name, size, action))
        plain, bot = (min(kept, key=lambda row: abs(row["wall_s"] - _median(kept))) for kept in (plains, bots))
        ratio = _median(bots) / _median(plains)
        extra_cpu = bot["client_cpu_ms_per_msg"] - plain["client_cpu_ms_per_msg"]
        each = ", ".join(f"{100 * (b['wall_s'] / p['wall_s'] - 1):+.0f}%" for p, b in zip(plains, bots, strict=True))
        print(
            f"  -> the ledger costs {100 * (ratio - 1):+.1f}% wall ({label}; median of {rounds} rounds, each round "
            f"{each}), "
            f"{extra_cpu:+.2f} ms client CPU per message",
            flush=True,
        )
        rows += [plain, {**bot, "vs_plain": round(ratio, 3), "rounds": rounds}]
    return rows


def _median(rows: list[dict[str, Any]]) -> float:
    return float(statistics.median(row["wall_s"] for row in rows))


def scaling(bench: Bench, size: int) -> list[dict[str, Any]]:
    rows = []
    per_mailbox = size // 4
    base = None
    for workers in (1, 2, 4):
        users = bench.mailboxes(4, per_mailbox)
        runner = bench.runner(users, steps=STEPS_WITH_REPLY, workers=workers, name=f"scale-{workers}")
        row = bench.measure(f"4 mailboxes, {workers} worker(s)", per_mailbox * 4, lambda r=runner: _run(r, size))
        base = base or row["msg_per_s"]
        row["vs_1_worker"] = round(row["msg_per_s"] / base, 2)
        print(f"  -> {row['vs_1_worker']}x one worker", flush=True)
        rows.append(row)
    return rows


def latency(bench: Bench, samples: int) -> dict[str, Any]:
    (user,) = bench.mailboxes(1, 0)
    runner = bench.runner([user], steps=STEPS_WITH_REPLY, workers=2, name="latency")
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, kwargs={"watch": True, "stop": stop})
    thread.start()
    time.sleep(2)
    waits = []
    try:
        for number in range(1, samples + 1):
            raw = invoice(10_000 + number, user)
            message_id = raw.split(b"Message-ID: ", 1)[1].split(b"\r\n" if b"\r\n" in raw else b"\n", 1)[0].decode()
            delivered = time.perf_counter()
            bench.dovecot.deliver(user, raw)
            while message_id not in replies_by_original(bench.smtp.received[-50:]):
                time.sleep(0.002)
                if time.perf_counter() - delivered > 30:
                    raise RuntimeError("no reply within 30 s")
            waits.append(time.perf_counter() - delivered)
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
    waits.sort()
    row = {
        "case": "IDLE: delivery to reply",
        "samples": samples,
        "median_s": round(statistics.median(waits), 3),
        "p90_s": round(waits[int(0.9 * (len(waits) - 1))], 3),
    }
    print(f"{row['case']:<26} median {row['median_s']} s, p90 {row['p90_s']} s over {samples}", flush=True)
    return row


def _run(runner: LocalRunner, expected: int) -> None:
    report = runner.run()
    if report.exit_code != 0:
        raise RuntimeError(f"the run failed: {report.to_dict()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=10_000, help="messages per case (default 10,000)")
    parser.add_argument("--latency-samples", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the ledger-cost comparison (median)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument(
        "--only", choices=["ledger", "scaling", "latency"], action="append", help="run only these parts"
    )
    arguments = parser.parse_args()
    os.environ.update(PASSWORD_ENV)
    os.environ.setdefault("POSTROOM_HOME", tempfile.mkdtemp(prefix="postroom-bench-home-"))
    dovecot = Dovecot.start(extra_config="mail_max_userip_connections = 50\n")
    try:
        with smtp_server(dovecot) as smtp, tempfile.TemporaryDirectory() as folder:
            bench = Bench(dovecot, smtp, Path(folder))
            parts = arguments.only or ["ledger", "scaling", "latency"]
            rows: list[dict[str, Any]] = []
            if "ledger" in parts:
                rows += ledger_cost(bench, arguments.size, arguments.rounds)
            if "scaling" in parts:
                rows += scaling(bench, arguments.size)
            if "latency" in parts:
                rows.append(latency(bench, arguments.latency_samples))
    finally:
        dovecot.stop()
    if arguments.json:
        arguments.json.write_text(yaml.safe_dump(rows, sort_keys=False))


if __name__ == "__main__":
    main()
