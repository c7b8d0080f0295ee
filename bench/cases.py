"""One benchmark case per child process: ``python -m bench.cases CASE HOST PORT CA USER PASSWORD``.

Every case hands each message to the same consumer (subject, from, date, text
body, attachment names) and prints ``{"seconds", "messages"}`` for the span after
login: from selecting the folder to the last message consumed.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.children import report as _report
from bench.children import report_seconds

Consumed = tuple[str, str, Any, str, list[str]]


def _context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def _stdlib_fields(raw: bytes) -> Consumed:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    body = message.get_body(("plain", "html"))
    text = body.get_content() if body is not None else ""
    return (
        str(message["subject"] or ""),
        str(message["from"] or ""),
        message["date"].datetime if message["date"] is not None and message["date"].datetime else None,
        text,
        [part.get_filename() or "" for part in message.iter_attachments()],
    )


def case_postroom(host: str, port: int, ca: str, user: str, password: str, *, bodies: bool = True) -> int:
    import postroom
    from postroom import Basic, EmailServer, Variable

    config = EmailServer(host=host, port=port, ca_file=ca, auth=Basic(Variable("U"), Variable("P")))
    session = postroom.connect("bench", config, variables={"U": user, "P": password})
    count = 0
    start = time.perf_counter()
    for message in postroom.messages(session, order="oldest"):
        _ = (message.subject, str(message.from_ or ""), message.sent_date, message.attachment_names)
        if bodies:
            _ = message.text
        count += 1
    _report(start, count)
    postroom.disconnect("bench")
    return count


def case_postroom_headers(host: str, port: int, ca: str, user: str, password: str) -> int:
    return case_postroom(host, port, ca, user, password, bodies=False)


def _imaplib(host: str, port: int, ca: str, user: str, password: str) -> imaplib.IMAP4_SSL:
    client = imaplib.IMAP4_SSL(host, port, ssl_context=_context(ca))
    client.login(user, password)
    return client


def case_imaplib_parse(host: str, port: int, ca: str, user: str, password: str) -> int:
    client = _imaplib(host, port, ca, user, password)
    start = time.perf_counter()
    client.select("INBOX", readonly=True)
    _typ, data = client.uid("FETCH", "1:*", "(RFC822)")
    count = 0
    for item in data:
        if isinstance(item, tuple):
            _stdlib_fields(item[1])
            count += 1
    _report(start, count)
    client.logout()
    return count


def case_imaplib_raw(host: str, port: int, ca: str, user: str, password: str) -> int:
    client = _imaplib(host, port, ca, user, password)
    start = time.perf_counter()
    client.select("INBOX", readonly=True)
    _typ, data = client.uid("FETCH", "1:*", "(RFC822)")
    count = sum(1 for item in data if isinstance(item, tuple))
    _report(start, count)
    client.logout()
    return count


def _imap_tools(host: str, port: int, ca: str, user: str, password: str) -> Any:
    from imap_tools import MailBox

    return MailBox(host, port, ssl_context=_context(ca)).login(user, password, initial_folder=None)


def _imap_tools_consume(fetch: Callable[[], Any], start: float) -> int:
    count = 0
    for message in fetch():
        _ = (
            message.subject,
            message.from_,
            message.date,
            message.text or message.html,
            [a.filename for a in message.attachments],
        )
        count += 1
    _report(start, count)
    return count


def case_imaptools_bulk(host: str, port: int, ca: str, user: str, password: str) -> int:
    box = _imap_tools(host, port, ca, user, password)
    start = time.perf_counter()
    box.folder.set("INBOX", readonly=True)
    return _imap_tools_consume(lambda: box.fetch(bulk=True, mark_seen=False), start)


def case_imaptools_default(host: str, port: int, ca: str, user: str, password: str) -> int:
    box = _imap_tools(host, port, ca, user, password)
    start = time.perf_counter()
    box.folder.set("INBOX", readonly=True)
    return _imap_tools_consume(lambda: box.fetch(mark_seen=False), start)


def case_postroom_pop3(host: str, port: int, ca: str, user: str, password: str) -> int:
    """The same loop over POP3 (implicit TLS): every message is a whole RETR, parsed once."""
    import postroom
    from postroom import Basic, EmailServer, Variable

    config = EmailServer(
        host=host, port=port, protocol="pop3", security="ssl", ca_file=ca, auth=Basic(Variable("U"), Variable("P"))
    )
    session = postroom.connect("bench", config, variables={"U": user, "P": password})
    count = 0
    start = time.perf_counter()
    for message in postroom.messages(session, order="oldest"):
        _ = (message.subject, str(message.from_ or ""), message.sent_date, message.attachment_names, message.text)
        count += 1
    _report(start, count)
    postroom.disconnect("bench")
    return count


def case_poplib_parse(host: str, port: int, ca: str, user: str, password: str) -> int:
    """poplib RETR of every message, each parsed with ``policy=default`` (the POP3 anchor)."""
    import poplib

    poplib._MAXLINE = 1 << 26  # poplib stops at 2 KB lines ("line too long"); a user must raise it for real mail
    client = poplib.POP3_SSL(host, port, context=_context(ca))
    client.user(user)
    client.pass_(password)
    start = time.perf_counter()
    total, _size = client.stat()
    for number in range(1, total + 1):
        _resp, lines, _octets = client.retr(number)
        _stdlib_fields(b"\r\n".join(lines) + b"\r\n")
    _report(start, total)
    client.quit()
    return total


def case_postroom_move(host: str, port: int, ca: str, user: str, password: str, *, count: int = 1000) -> int:
    """Move ``count`` messages to Archive (timed) and back (not timed), by key, in one bulk call."""
    import postroom
    from postroom import Basic, EmailServer, Variable

    config = EmailServer(host=host, port=port, ca_file=ca, auth=Basic(Variable("U"), Variable("P")))
    with postroom.connect("bench", config, variables={"U": user, "P": password}) as session:
        postroom.create_folder(session, "Archive")
        chosen = [m.key for m in postroom.messages(session, order="oldest", limit=count)]
        start = time.perf_counter()
        results = postroom.move(session, chosen, "Archive")
        seconds = time.perf_counter() - start
        postroom.move(session, [r.new_key for r in results if r.new_key], "INBOX")
    report_seconds(seconds, sum(r.ok for r in results))
    return len(results)


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


def case_postroom_save(host: str, port: int, ca: str, user: str, password: str) -> int:
    """Save every attachment of the mailbox to disk (postroom streams each in ranges); reports MB written."""
    import tempfile

    import postroom
    from postroom import Basic, EmailServer, Variable

    config = EmailServer(host=host, port=port, ca_file=ca, auth=Basic(Variable("U"), Variable("P")))
    session = postroom.connect("bench", config, variables={"U": user, "P": password})
    with tempfile.TemporaryDirectory(prefix="bench-save-") as folder:
        start = time.perf_counter()
        files = 0
        for message in postroom.messages(session, order="oldest"):
            files += len(message.save_attachments(folder))
        seconds = time.perf_counter() - start
        written = _folder_bytes(Path(folder))
    postroom.disconnect("bench")
    report_seconds(seconds, files, megabytes=written / 1e6)
    return files


def case_imaptools_save(host: str, port: int, ca: str, user: str, password: str) -> int:
    """imap-tools' bulk fetch, each attachment's payload written to a file (as its docs show)."""
    import tempfile

    box = _imap_tools(host, port, ca, user, password)
    box.folder.set("INBOX", readonly=True)
    with tempfile.TemporaryDirectory(prefix="bench-save-") as folder:
        start = time.perf_counter()
        files = 0
        for message in box.fetch(bulk=True, mark_seen=False):
            for attachment in message.attachments:
                files += 1
                (Path(folder) / f"{files}-{Path(attachment.filename or 'file').name}").write_bytes(attachment.payload)
        seconds = time.perf_counter() - start
        written = _folder_bytes(Path(folder))
    report_seconds(seconds, files, megabytes=written / 1e6)
    return files


SENDS = 1000


def case_postroom_send(host: str, port: int, ca: str, user: str, password: str) -> int:
    """1,000 messages through the SMTP server (STARTTLS + AUTH) with ``send_each`` on one SMTP server."""
    import postroom
    from postroom import Basic, SmtpServer, Variable

    server = SmtpServer(host=host, port=port, security="starttls", ca_file=ca, auth=Basic(Variable("U"), Variable("P")))
    names = {"U": user, "P": password}
    start = time.perf_counter()
    results = postroom.send_each(
        server, [{"to": user, "subject": f"bench {n}", "body": "hello"} for n in range(SENDS)], variables=names
    )
    _report(start, sum(r.sent for r in results))
    return len(results)


def _smtplib(host: str, port: int, ca: str, user: str, password: str) -> Any:
    import smtplib

    client = smtplib.SMTP(host, port)
    client.starttls(context=_context(ca))
    client.login(user, password)
    return client


def _bench_message(user: str, number: int) -> bytes:
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = user, user, f"bench {number}"
    message.set_content("hello")
    return message.as_bytes()


def case_smtplib_per_message(host: str, port: int, ca: str, user: str, password: str) -> int:
    """A new connection, STARTTLS and AUTH for every message (what a naive bot does)."""
    start = time.perf_counter()
    for number in range(SENDS):
        client = _smtplib(host, port, ca, user, password)
        client.sendmail(user, [user], _bench_message(user, number))
        client.quit()
    _report(start, SENDS)
    return SENDS


def case_smtplib_reused(host: str, port: int, ca: str, user: str, password: str) -> int:
    """One connection for all messages (the lower bound)."""
    client = _smtplib(host, port, ca, user, password)
    start = time.perf_counter()
    for number in range(SENDS):
        client.sendmail(user, [user], _bench_message(user, number))
    _report(start, SENDS)
    client.quit()
    return SENDS


def check(host: str, port: int, ca: str, user: str, password: str, sample: int = 200) -> dict[str, Any]:
    """postroom's fields against a full ``policy=default`` parse of the same messages."""
    import postroom
    from postroom import Basic, EmailServer, Variable

    config = EmailServer(host=host, port=port, ca_file=ca, auth=Basic(Variable("U"), Variable("P")))
    session = postroom.connect("check", config, variables={"U": user, "P": password})
    compared = 0
    mismatches: list[dict[str, str]] = []
    for message in postroom.messages(session, order="oldest", limit=sample):
        ours: Consumed = (
            message.subject,
            str(message.from_ or ""),
            message.sent_date,
            message.text,
            message.attachment_names,
        )
        theirs = _stdlib_fields(message.raw())
        theirs = (theirs[0], theirs[1], theirs[2], theirs[3].replace("\r\n", "\n"), theirs[4])
        for name, a, b in zip(("subject", "from", "date", "text", "attachments"), ours, theirs, strict=True):
            if a != b:
                mismatches.append(
                    {"key": str(message.key), "field": name, "postroom": repr(a)[:80], "stdlib": repr(b)[:80]}
                )
        compared += 1
    postroom.disconnect("check")
    return {"compared": compared, "mismatches": mismatches}


CASES: dict[str, Callable[..., Any]] = {
    "postroom": case_postroom,
    "postroom-delayed": case_postroom,  # the same loop, through bench.delay's proxy (25 ms each way)
    "postroom-pop3": case_postroom_pop3,
    "poplib-parse": case_poplib_parse,
    "postroom-move": case_postroom_move,
    "postroom-save": case_postroom_save,
    "imaptools-save": case_imaptools_save,
    "postroom-send": case_postroom_send,
    "smtplib-per-message": case_smtplib_per_message,
    "smtplib-reused": case_smtplib_reused,
    "postroom-headers": case_postroom_headers,
    "imaplib-parse": case_imaplib_parse,
    "imaplib-raw": case_imaplib_raw,
    "imaptools-bulk": case_imaptools_bulk,
    "imaptools-default": case_imaptools_default,
}

if __name__ == "__main__":
    name, host, port_text, ca, user, password = sys.argv[1:7]
    if name == "check":
        print(json.dumps(check(host, int(port_text), ca, user, password)))
    else:
        CASES[name](host, int(port_text), ca, user, password)
