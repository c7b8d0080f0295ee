"""A deterministic, realistic mailbox: 70% small text, 20% multipart HTML, 10% with a 50-300 KB attachment.

About 20% of subjects are RFC 2047 encoded (non-ASCII), about 1% carry control
characters (raw, and inside encoded words), about 0.5% have no subject, and some
From headers are broken. The same seed gives the same bytes every run.
"""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

__all__ = ["generate"]

_WORDS = (
    "invoice order shipment report meeting budget review contract delivery payment reminder update "
    "ticket incident schedule forecast quarterly account statement summary request approval"
).split()
_NAMES = ["Anna Schmidt", "Jürgen Müller", "Zoë Dubois", "李雷", "Ольга Петрова", "Bob Smith", "Åsa Öberg"]
_DOMAINS = ["example.com", "acme.test", "globex.test", "initech.test"]


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(_WORDS))
        if rng.random() < 0.1:
            words.append("\n")
    return " ".join(words).replace(" \n ", "\n") + "\n"


def _encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


def _subject(rng: random.Random, index: int) -> str | None:
    roll = rng.random()
    if roll < 0.005:
        return None
    base = f"{rng.choice(_WORDS).title()} {index}: {rng.choice(_WORDS)} {rng.choice(_WORDS)}"
    if roll < 0.015:
        return f"{base} \x07 bell" if rng.random() < 0.5 else _encoded_word(f"{base} \x07 ctrl")
    if roll < 0.215:
        return _encoded_word(f"{base} — Grüße, {rng.choice(_NAMES)}")
    return base


def _sender(rng: random.Random) -> str:
    name = rng.choice(_NAMES)
    address = f"{name.split()[0].lower().encode('ascii', 'ignore').decode() or 'user'}@{rng.choice(_DOMAINS)}"
    if rng.random() < 0.005:
        return f"{name} <broken@@{rng.choice(_DOMAINS)}"  # malformed
    display = name if name.isascii() else _encoded_word(name)
    return f"{display} <{address}>"


def _headers(rng: random.Random, index: int, extra: str) -> str:
    subject = _subject(rng, index)
    lines = [
        f"From: {_sender(rng)}",
        "To: Bot <bot@example.test>",
        f"Date: {['Mon', 'Tue', 'Wed', 'Thu', 'Fri'][index % 5]}, {1 + index % 28:02d} Oct 2026 "
        f"{index % 24:02d}:{index % 60:02d}:00 +0200",
        f"Message-ID: <bench-{index}@example.test>",
        "MIME-Version: 1.0",
    ]
    if subject is not None:
        lines.append(f"Subject: {subject}")
    return "\r\n".join(lines) + "\r\n" + extra


def _plain(rng: random.Random, index: int) -> bytes:
    body = _text(rng, rng.randint(1500, 6500))
    return (
        _headers(rng, index, "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n")
        + "\r\n"
        + body.replace("\n", "\r\n")
    ).encode()


def _alternative(rng: random.Random, index: int) -> bytes:
    text = _text(rng, rng.randint(2000, 5000))
    html = "<html><body>" + "".join(f"<p>{line}</p>" for line in text.splitlines()) + "</body></html>"
    boundary = f"alt-{index}"
    qp_html = html.replace("=", "=3D")
    parts = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + text.replace("\n", "\r\n")
        + f"\r\n--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp_html + f"\r\n--{boundary}--\r\n"
    )
    header = f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
    return (_headers(rng, index, header) + "\r\n" + parts).encode()


def _with_attachment(rng: random.Random, index: int) -> bytes:
    text = _text(rng, rng.randint(500, 2000))
    payload = rng.randbytes(rng.randint(50_000, 300_000))
    encoded = base64.encodebytes(payload).decode().replace("\n", "\r\n")
    boundary = f"mix-{index}"
    name = f"report-{index}.pdf" if rng.random() < 0.8 else _encoded_word(f"Übersicht {index}.pdf")
    parts = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text.replace("\n", "\r\n")
        + f'\r\n--{boundary}\r\nContent-Type: application/pdf; name="{name}"\r\n'
        f'Content-Disposition: attachment; filename="{name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + encoded
        + f"--{boundary}--\r\n"
    )
    header = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
    return (_headers(rng, index, header) + "\r\n" + parts).encode()


def generate(count: int, seed: int = 1) -> Iterator[bytes]:
    """``count`` messages of the mix, the same bytes for the same seed."""
    rng = random.Random(seed)
    for index in range(count):
        roll = rng.random()
        if roll < 0.7:
            yield _plain(rng, index)
        elif roll < 0.9:
            yield _alternative(rng, index)
        else:
            yield _with_attachment(rng, index)
