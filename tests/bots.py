"""Helpers for the bot tests: mailboxes of invoices on Dovecot, bot files for them, counting replies."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import yaml

from tests.servers.dovecot import SHARED_PASSWORD, Dovecot

__all__ = ["PASSWORD_ENV", "bot_file", "fill_mailbox", "invoice", "replies_by_original", "until", "watching"]


def invoice(number: int, mailbox: str) -> bytes:
    """An invoice from vendor ``number`` with a PDF whose bytes are its own (so each saved file is unique)."""
    message = EmailMessage()
    message["From"] = f"Vendor {number} <vendor{number}@vendors.test>"
    message["To"] = mailbox
    message["Subject"] = f"Invoice {number} from Vendor {number}"
    message["Date"] = format_datetime(dt.datetime(2026, 11, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=number))
    message["Message-ID"] = make_msgid(domain="vendors.test")
    message.set_content(f"Invoice {number} attached.\n")
    message.add_attachment(
        (f"%PDF-1.4 invoice {number}\n" + "x" * (200 + number % 97)).encode(),
        maintype="application",
        subtype="pdf",
        filename=f"invoice-{number}.pdf",
    )
    return message.as_bytes()


def fill_mailbox(dovecot: Dovecot, user: str, numbers: range) -> list[bytes]:
    messages = [invoice(n, user) for n in numbers]
    dovecot.deliver_many(user, messages)
    # deliver_many files them as seen-less "cur" mail: fine for loops with status: all
    return messages


def bot_file(
    folder: Path,
    dovecot: Dovecot,
    *,
    name: str = "invoices",
    users: list[str],
    smtp_port: int,
    steps: list[Any] | None = None,
    ledger: str | None = None,
    imap_port: int | None = None,
    **top: Any,
) -> Path:
    """A bot file over ``users``' mailboxes on Dovecot (implicit TLS), sending through the test SMTP server."""
    certs = dovecot.certs
    assert certs is not None

    def session(user: str, index: int) -> dict[str, Any]:
        return {
            "name": f"box{index}",
            "protocol": "imap",
            "host": "localhost",
            "port": imap_port or dovecot.ports["imaps"],
            "security": "ssl",
            "ca_file": str(certs.ca_file),
            "smtp_host": "localhost",
            "smtp_port": smtp_port,
            "smtp_security": "ssl",
            "connect_timeout": 5,
            "read_timeout": 10,
            "auth": {"mode": "basic", "username": user, "password": "env:BOT_PASSWORD"},
        }

    document: dict[str, Any] = {
        "bot": name,
        "sessions": [session(user, i) for i, user in enumerate(users)],
        "loop": {"folder": "INBOX", "subject": r"^Invoice (\d+) from", "regex": True, "order": "oldest"},
        "steps": steps
        or [
            {"save_attachments": {"folder": "saved/{folder}", "pattern": "*.pdf"}},
            {"reply": "Thank you for invoice {subject_match[1]}."},
            {"move": "Processed"},
        ],
        "on_failure": {"retries": 5, "backoff": "1s", "max_backoff": "2s"},
        "claim_lease": "10s",
        **top,
    }
    if ledger:
        document["ledger"] = ledger
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def replies_by_original(received: list[tuple[str, list[str], bytes]]) -> dict[str, int]:
    """How many replies the SMTP server took for each original Message-ID (by In-Reply-To)."""
    counts: dict[str, int] = {}
    for _sender, _recipients, raw in received:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        original = str(parsed.get("In-Reply-To", "")).strip()
        if original:
            counts[original] = counts.get(original, 0) + 1
    return counts


PASSWORD_ENV = {"BOT_PASSWORD": SHARED_PASSWORD}


#: Seconds a watching runner may take to stop: its waits end at ``stop``, never at the reconcile interval.
STOPS_WITHIN = 8.0


@contextmanager
def watching(runner: Any) -> Iterator[None]:
    """``runner.run(watch=True)`` in a thread for the block; stopped at its end, and it must have ended
    within :data:`STOPS_WITHIN` seconds (a user's Ctrl-C or a service stop must not wait out an IDLE)."""
    stop = threading.Event()
    thread = threading.Thread(target=runner.run, kwargs={"watch": True, "stop": stop})
    thread.start()
    try:
        yield
    finally:
        stop.set()
        asked = time.monotonic()
        thread.join(60)
    assert not thread.is_alive(), "the watching runner did not stop"
    took = time.monotonic() - asked
    assert took < STOPS_WITHIN, f"the watching runner took {took:.1f}s to stop"


def until(done: Callable[[], object], timeout: float, every: float = 0.02) -> float:
    """Seconds until ``done()`` is true (or ``timeout`` passed: the caller's assertion says what is missing)."""
    started = time.monotonic()
    while not done() and time.monotonic() - started < timeout:
        time.sleep(every)
    return time.monotonic() - started
