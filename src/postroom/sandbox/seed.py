"""Sample mail for the sandbox: invoices with PDF attachments, and a few other messages."""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

__all__ = ["sample_mailbox", "tiny_pdf"]

_VENDORS = [
    ("Acme Tools", "billing@acme.example", 1240.50),
    ("Müller & Söhne GmbH", "rechnung@mueller.example", 318.00),
    ("Globex Corporation", "ar@globex.example", 7995.25),
    ("Initech", "invoices@initech.example", 86.40),
]


def tiny_pdf(text: str) -> bytes:
    """A small, valid one-page PDF showing ``text``."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _message(sender: str, to: str, subject: str, body: str, when: dt.datetime) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid(domain="sandbox.postroom.test")
    message.set_content(body)
    return message


def sample_mailbox(user: str, now: dt.datetime | None = None) -> list[tuple[str, bytes, bool]]:
    """``(folder, raw message, seen)``: 4 unread invoices and 3 others in INBOX, one earlier invoice in Processed."""
    now = now or dt.datetime.now(dt.UTC)
    mail: list[tuple[str, bytes, bool]] = []
    for number, (vendor, address, amount) in enumerate(_VENDORS, start=1041):
        when = now - dt.timedelta(hours=5 * (number - 1040))
        message = _message(
            f"{vendor} <{address}>",
            user,
            f"Invoice {number} from {vendor}",
            f"Hello,\n\nplease find attached invoice {number} over EUR {amount:,.2f}.\n\nKind regards,\n{vendor}\n",
            when,
        )
        message.add_attachment(
            tiny_pdf(f"Invoice {number}: EUR {amount:,.2f}"),
            maintype="application",
            subtype="pdf",
            filename=f"invoice-{number}.pdf",
        )
        mail.append(("INBOX", message.as_bytes(), False))
    others = [
        ("IT Helpdesk <helpdesk@corp.example>", "Ticket #5521: printer on floor 3", False),
        ("Newsletter <news@vendor.example>", "Our autumn offers", True),
        ("Acme Tools <billing@acme.example>", "Invoice 1037 from Acme Tools (paid)", True),
    ]
    for offset, (sender, subject, seen) in enumerate(others):
        when = now - dt.timedelta(days=2 + offset)
        mail.append(("INBOX", _message(sender, user, subject, "See the subject.\n", when).as_bytes(), seen))
    earlier = _message("Acme Tools <billing@acme.example>", user, "Invoice 1012 from Acme Tools", "Paid.\n", now)
    mail.append(("Processed", earlier.as_bytes(), True))
    return mail
