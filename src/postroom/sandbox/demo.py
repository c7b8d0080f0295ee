"""The bot behind ``postroom demo``: an invoice bot against the embedded sandbox server.

It does what a real bot does, with the public API only: loop over unread mail
whose subject matches a regular expression, save the PDF attachments, reply to
the sender, move the message to ``Processed``, and report.
"""

from __future__ import annotations

import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import postroom
from postroom.sandbox.seed import sample_mailbox
from postroom.sandbox.server import SandboxServer

__all__ = ["INVOICE_SUBJECT", "invoice_bot", "run_demo"]

DEMO_USER = "bot@sandbox.postroom.test"
#: The bot's filter: "Invoice 1041 from Acme Tools", not "... (paid)".
INVOICE_SUBJECT = r"^Invoice (\d+) from (?!.*\(paid\))"


def invoice_bot(session: postroom.Session, out: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The bot itself, on any session (IMAP, EWS): unread invoices → save PDFs, reply, move to Processed."""
    done = []
    for message in postroom.messages(session, status="unread", subject=INVOICE_SUBJECT, regex=True, order="oldest"):
        number = re.match(INVOICE_SUBJECT, message.subject).group(1)  # type: ignore[union-attr]
        saved = message.save_attachments(out, pattern="*.pdf")
        receipt = postroom.reply(session, message, f"Thank you, we received invoice {number}.")
        moved = postroom.move(session, message, "Processed")[0]
        done.append(
            {
                "subject": message.subject,
                "from": message.from_address,
                "files": [str(s.path) for s in saved],
                "replied_to": list(receipt.recipients),
                "moved": moved.ok,
                "defects": list(message.defects),
            }
        )
        say(
            f"  {message.subject}: saved {', '.join(s.path.name for s in saved)}, replied to "
            f"{', '.join(receipt.recipients)}, moved to Processed"
        )
    return done


def run_demo(say: Callable[[str], None], workdir: Path | None = None) -> dict[str, Any]:
    """Start the sandbox, seed it, and run the invoice bot. ``say`` receives one line per step."""
    folder = Path(workdir or tempfile.mkdtemp(prefix="postroom-demo-"))
    out = folder / "invoices"
    password = secrets.token_urlsafe(16)  # a fresh secret per run, handed over as a bot variable
    variables = {"SANDBOX_USER": DEMO_USER, "SANDBOX_PASSWORD": password}
    summary: dict[str, Any] = {"workdir": str(folder), "invoices": []}
    with SandboxServer(folder, user=DEMO_USER, password=password) as server:
        say(
            f"started an embedded mail server: IMAP {server.host}:{server.imap_port}, SMTP :{server.smtp_port} "
            f"(STARTTLS, CA {server.ca_file})"
        )
        mail = sample_mailbox(DEMO_USER)
        server.deliver(mail)
        summary["delivered"] = len(mail)
        say(f"delivered {len(mail)} sample messages to {DEMO_USER}")
        config = server.config()
        tested = postroom.test_connection(config, name="sandbox", variables=variables)
        report = tested.report
        say(
            f"test connection: {report.address} {report.tls_version}, {report.folder_count} folder(s), "
            f"capabilities include {' '.join(c for c in report.capabilities if c in {'MOVE', 'UIDPLUS', 'IDLE'})}"
        )
        summary["test_connection"] = tested.to_dict()
        with postroom.connect("invoices", config, variables=variables) as session:
            say(f"loop: unread messages matching {INVOICE_SUBJECT!r}")
            summary["invoices"] = invoice_bot(session, out, say)
            remaining = [m.subject for m in postroom.messages(session)]
            processed = [m.subject for m in postroom.messages(session, folder="Processed")]
        summary.update(inbox=remaining, processed=processed, replies_sent=len(server.outbox), output=str(out))
        moved = sum(1 for invoice in summary["invoices"] if invoice["moved"])
        say(
            f"done: this run moved {moved} invoice(s) to Processed and sent {len(server.outbox)} replies; "
            f"{len(remaining)} message(s) left in INBOX"
        )
    return summary
