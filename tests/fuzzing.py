"""A mail fuzzer: seed messages mutated the ways hostile and broken mail really differs.

Used by the suite's fixed-seed fuzz test (a few thousand mutations) and by
``bench/fuzz.py`` (hundreds of thousands, with a count per exception site). The
mutations aim where parsers break: charsets that are not text encodings, RFC 2231
parameters, transfer encodings, encoded words, nesting, long and odd headers, and
plain random bytes.
"""

from __future__ import annotations

import random
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from postroom import Message
from postroom.message.saving import attachment_file_name, save_attachments
from tests.mail_samples import HOSTILE, raw, simple

#: Charset names that break decoders: codecs that are not text encodings, strict-only ones, NULs, junk.
CHARSETS = [
    "rot13", "zlib", "hex", "base64", "bz2", "uu", "quopri", "idna", "punycode", "undefined",
    "unicode_escape", "raw_unicode_escape", "utf\x00-8", "utf-7", "utf-16", "utf-32", "utf-8''utf-8",
    "x-unknown", "unknown-8bit", "", '"', "cp1252", "iso-8859-1", "gb2312", "shift_jis", "mbcs", "oem",
    "utf-8\x80", "\xff", "ascii", "charmap", "utf_8_sig", "big5hkscs", "ptcp154", "koi8-u", "palmos",
]  # fmt: skip
ENCODINGS = ["base64", "quoted-printable", "8bit", "7bit", "binary", "x-uuencode", "uuencode", "b\xe4se64", "", "q"]
TYPES = ["text/plain", "text/html", "multipart/mixed", "multipart/alternative", "message/rfc822", "message/global",
         "application/octet-stream", "image/png", "text/calendar", "multipart/signed", "message/partial", "x/y/z",
         "multipart", "text", ""]  # fmt: skip


def _multipart_seeds() -> list[bytes]:
    nested = simple("inner", attachments={"inner.pdf": b"%PDF-1.4 inner"})
    return [
        raw(
            "From: a@example.test\nTo: b@example.test\nSubject: =?utf-8?q?caf=C3=A9?=\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="outer"\n\n--outer\n'
            'Content-Type: multipart/alternative; boundary="alt"\n\n--alt\nContent-Type: text/plain; charset=utf-8\n'
            "Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9\n--alt\nContent-Type: text/html; charset=utf-8\n\n"
            "<p>caf\xe9</p>\n--alt--\n--outer\nContent-Type: application/pdf; name*0=a; name*1=b.pdf\n"
            "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\n"
            "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--outer\nContent-Type: message/rfc822\n\n"
        )
        + nested
        + b"\r\n--outer--\r\n",
        raw(
            "From: =?iso-8859-1?b?SvxyZ2Vu?= <j@example.test>\nSubject: =?utf-8?b?w7w=?= =?utf-8?q?=C3=9F?=\n"
            "Date: 1 Dec 2026 10:00 +0100\nContent-Type: text/plain; charset=iso-8859-1\n"
            "Content-Transfer-Encoding: 8bit\n\nGr\xfc\xdfe\n"
        ),
    ]


def seeds() -> list[bytes]:
    """The messages mutations start from: ordinary, multipart, nested and the suite's hostile samples."""
    found = [simple("plain"), simple("with pdf", attachments={"a.pdf": b"%PDF"}, html="<b>x</b>")]
    found += _multipart_seeds()
    found += [data for data, _names in HOSTILE.values() if len(data) < 10_000]  # the deep one has its own test
    return found


def _replace_params(data: bytes, rng: random.Random) -> bytes:
    choice = rng.randrange(7)
    charset = rng.choice(CHARSETS).encode("latin-1")
    if choice == 0:
        return data.replace(b"charset=utf-8", b"charset=" + charset, 1).replace(
            b'charset="utf-8"', b"charset=" + charset
        )
    if choice == 1:
        return data.replace(
            b"Content-Transfer-Encoding: ",
            b"Content-Transfer-Encoding: " + rng.choice(ENCODINGS).encode("latin-1") + b"\r\nX-Was: ",
            1,
        )
    if choice == 2:
        word = (
            b"=?"
            + charset
            + b"?"
            + rng.choice([b"q", b"b", b"Q", b"x"])
            + b"?"
            + rng.choice([b"abc", b"=FF=00", b"w7w=", b"", b"_=3F"])
            + b"?="
        )
        return data.replace(b"Subject: ", b"Subject: " + word + b" ", 1)
    if choice == 3:
        params = rng.choice(
            [
                b"name*0=a; name*=b",
                b"charset*=utf-8''utf-8",
                b"name*=" + charset + b"''%FF%00",
                b"name*1=x; name*0*=utf-8''%C3",
                b'name="a\r\n b"',
                b"name*99999999999999999999=q",
                b"filename*=''",
            ]
        )
        return data.replace(
            b"Content-Type: ", b"Content-Type: application/octet-stream; " + params + b"\r\nX-Old-Type: ", 1
        )
    if choice == 4:
        kind = rng.choice(TYPES).encode("latin-1")
        return data.replace(
            b"Content-Type: ",
            b"Content-Type: " + kind + b'; boundary="' + bytes([rng.randrange(256)]) + b'"\r\nX-Old: ',
            1,
        )
    if choice == 5:
        return data.replace(
            b"Content-Disposition: ",
            b"Content-Disposition: "
            + rng.choice(
                [b"attachment; filename=", b"inline; filename*0*=", b"\xff; ", b'attachment; filename="a\x00b"']
            )
            + b"\r\nX-Old-Disp: ",
            1,
        )
    return data.replace(b"From: ", b"From: " + rng.choice([b"(" * 300, b'"' * 50, b"<<<@>>>", b"=?utf-8?q?a=2C_b?= <x@y>", b"\x00@\x00", b"a@b, " * 200]), 1)  # fmt: skip


def _nest(data: bytes, rng: random.Random) -> bytes:
    depth = rng.choice([2, 3, 5, 20, 120, 1500])
    kind = rng.choice([b"message/rfc822", b"multipart/mixed; boundary=b"])
    head = b"Content-Type: " + kind + b"\r\n\r\n"
    if kind.startswith(b"multipart"):
        head = head + b"--b\r\n"
    return head * depth + data


def _bytes(data: bytes, rng: random.Random) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randrange(1, 8)):
        if not buffer:
            break
        at = rng.randrange(len(buffer))
        operation = rng.randrange(6)
        if operation == 0:
            buffer[at] = rng.randrange(256)
        elif operation == 1:
            buffer[at:at] = bytes(
                rng.choice([0, 0x80, 0xFF, 13, 10, 0x1B, 0x3D, 0x3F, 0x22, 0x3B]) for _ in range(rng.randrange(1, 4))
            )
        elif operation == 2:
            del buffer[at : at + rng.randrange(1, 64)]
        elif operation == 3:
            end = min(len(buffer), at + rng.randrange(1, 200))
            buffer[at:at] = buffer[at:end] * rng.randrange(1, 5)
        elif operation == 4:
            buffer[at:at] = rng.choice([b"\r\n", b"\n\n", b"\r\n\r\n", b"\r\n ", b"--", b"=\r\n", b"=?", b"?="])
        else:
            line = buffer.find(b"\n", at)
            if line != -1:
                buffer[line:line] = b"x" * rng.choice([100, 3000, 70_000])
    return bytes(buffer)  # fmt: skip


MUTATIONS: list[Callable[[bytes, random.Random], bytes]] = [_replace_params, _replace_params, _nest, _bytes, _bytes]


def mutations(seed: int, count: int) -> Iterator[bytes]:
    """``count`` mutated messages, the same ones for the same ``seed``."""
    rng = random.Random(seed)
    base = seeds()
    for _ in range(count):
        data = rng.choice(base)
        for _round in range(rng.randrange(1, 4)):
            data = rng.choice(MUTATIONS)(data, rng)
        yield data


def read_everything(data: bytes, folder: Path) -> None:
    """Everything a bot reads from one message, offline: every property, every part, every saved file."""
    message = Message.from_bytes(data)
    message.properties(with_headers=True)
    for part in message.attachments(include_inline=True):
        message.part_content(part)
        attachment_file_name(part)
    save_attachments(message, folder, include_inline=True, include_nested=True, overwrite=True)


def failure_site(error: BaseException) -> str:
    """``Type at file:line``: the innermost frame, the site a fix goes to."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(error).__name__} at {where}"


def run(seed: int, count: int) -> dict[str, list[bytes]]:
    """Mutated messages that raised, grouped by failure site."""
    failures: dict[str, list[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="postroom-fuzz-") as tmp:
        folder = Path(tmp)
        for data in mutations(seed, count):
            try:
                read_everything(data, folder)
            except Exception as error:  # counting every kind is the point
                failures.setdefault(failure_site(error), []).append(data)
            for path in folder.iterdir():
                path.unlink()
    return failures
