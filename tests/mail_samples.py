"""Messages for the tests: ordinary ones, hostile ones, and CPython's own odd and malformed corpus."""

from __future__ import annotations

import base64
from email.message import EmailMessage
from pathlib import Path

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def simple(
    subject: str,
    sender: str = "Alice Example <alice@example.test>",
    body: str = "Hello.\n",
    date: str = "Tue, 24 Nov 2026 09:00:00 +0000",
    attachments: dict[str, bytes] | None = None,
    html: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "Bot <bot@example.test>"
    message["Subject"] = subject
    message["Date"] = date
    message["Message-ID"] = f"<{abs(hash((subject, sender, body)))}@example.test>"
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    for name, data in (attachments or {}).items():
        maintype, subtype = ("application", "pdf") if name.endswith(".pdf") else ("application", "octet-stream")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def raw(text: str) -> bytes:
    """A hand-written message; ``\\n`` becomes CRLF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "surrogateescape")


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


#: name → (raw message, file names a user must get after saving its attachments)
HOSTILE: dict[str, tuple[bytes, list[str]]] = {
    "path traversal": (
        raw(
            "From: x@evil.test\nSubject: traversal\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nbody\n'
            '--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="../../etc/passwd"\n'
            f"Content-Transfer-Encoding: base64\n\n{_b64(b'root:x:0:0')}"
            '--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="..\\\\..\\\\Windows\\\\evil.exe"\n'
            f"Content-Transfer-Encoding: base64\n\n{_b64(b'MZ')}"
            '--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="/tmp/abs.txt"\n\nabs\n'
            '--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=".."\n\ndots\n'
            '--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename="CON.txt"\n\ndevice\n'
            '--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename="bell\x07\x1b[31mred.txt"\n\nbell\n'
            "--b--\n"
        ),
        ["passwd", "evil.exe", "abs.txt", "attachment-5", "_CON.txt", "bell__[31mred.txt"],
    ),
    "rfc2231 name": (
        raw(
            "From: x@example.test\nSubject: rfc2231\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain; charset=utf-8\n\nbody\n'
            "--b\nContent-Type: application/pdf\n"
            "Content-Disposition: attachment; filename*0*=utf-8''Rechnung%20M%C3%BC; filename*1*=ller%20%E2%82%AC.pdf\n"
            f"Content-Transfer-Encoding: base64\n\n{_b64(PDF)}--b--\n"
        ),
        ["Rechnung Müller €.pdf"],
    ),
    "rfc2047 name, no disposition": (
        raw(
            "From: x@example.test\nSubject: rfc2047\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nbody\n'
            '--b\nContent-Type: application/pdf; name="=?utf-8?B?w7xiZXJzaWNodC5wZGY=?="\n'
            f"Content-Transfer-Encoding: base64\n\n{_b64(PDF)}--b--\n"
        ),
        ["übersicht.pdf"],
    ),
    "nested rfc822": (
        raw(
            "From: x@example.test\nSubject: Fwd: nested\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="outer"\n\n--outer\nContent-Type: text/plain\n\nsee attached\n'
            '--outer\nContent-Type: message/rfc822\nContent-Disposition: attachment; filename="original.eml"\n\n'
            "From: y@example.test\nSubject: original\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="inner"\n\n--inner\nContent-Type: text/plain\n\ninner body\n'
            '--inner\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="inner.pdf"\n'
            f"Content-Transfer-Encoding: base64\n\n{_b64(PDF)}--inner--\n--outer--\n"
        ),
        ["original.eml"],
    ),
    "wrong charsets": (
        raw(
            "From: =?x-klingon?q?Kor?= <k@example.test>\nSubject: =?utf-8?q?caf=C3=A9?= \udcff\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\ncaf\u00e9 \udce9\n"
        ),
        [],
    ),
    "control characters in subject": (
        raw("From: c@example.test\nSubject: ctrl \x07 bell =?utf-8?q?and_=07_encoded?=\n\nbody\n"),
        [],
    ),
    "broken base64 and duplicate names": (
        raw(
            "From: b@example.test\nSubject: broken\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nbody\n'
            '--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="report.pdf"\n'
            "Content-Transfer-Encoding: base64\n\nJVBERi0x%%%%LjQK===\n"
            '--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="report.pdf"\n'
            f"Content-Transfer-Encoding: base64\n\n{_b64(PDF)}--b--\n"
        ),
        ["report.pdf", "report (2).pdf"],
    ),
    "no headers at all": (b"\r\njust a body\r\n", []),
    "MIME nested 3000 levels deep": (
        raw(
            "From: d@evil.test\nSubject: deep\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="top"\n\n--top\nContent-Type: text/plain\n\nbody\n'
            '--top\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="top.pdf"\n'
            f"Content-Transfer-Encoding: base64\n\n{_b64(PDF)}--top\n"
            + "".join(f'Content-Type: multipart/mixed; boundary="d{n}"\n\n--d{n}\n' for n in range(3000))
            + "Content-Type: text/plain\n\nbottom\n"
            + "".join(f"--d{n}--\n" for n in reversed(range(3000)))
            + "--top--\n"
        ),
        ["top.pdf"],
    ),
    "html only": (
        raw(
            "From: h@example.test\nSubject: html only\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n"
            "<html><body><p>Hello <b>world</b></p><script>x()</script><p>second&nbsp;line &amp; more</p></body></html>\n"
        ),
        [],
    ),
}


def cpython_corpus() -> list[tuple[str, bytes]]:
    """CPython's odd, old and malformed test messages (``Lib/test/test_email/data``)."""
    import test.test_email

    folder = Path(test.test_email.__file__).parent / "data"
    return [(path.name, path.read_bytes()) for path in sorted(folder.glob("msg_*.txt"))]
