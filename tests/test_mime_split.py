"""The fast MIME reader reads every message it takes exactly as the stdlib's parser does, or leaves it alone.

POP3 loops, ``.eml`` files and the in-memory mailbox read structure and parts through it; a message it
reads differently from the stdlib would change what a bot sees by protocol.
"""

from __future__ import annotations

import itertools

import pytest
from bench.mailbox import generate

from postroom import Message
from postroom.message.mime_split import split_raw
from postroom.message.structure import content_of, parse_raw, structure_of
from tests import fuzzing
from tests.mail_samples import HOSTILE, cpython_corpus, simple


def _agrees(raw: bytes) -> bool:
    """Whether the fast reader took ``raw``; when it did, that its structure and every leaf's content are the
    stdlib's."""
    split = split_raw(raw)
    if split is None:
        return False
    defects: list[str] = []
    parsed = parse_raw(raw, defects)
    assert split.structure == structure_of(parsed, "", defects), raw[:300]
    assert defects == []
    for part in split.structure.walk():
        if part.is_multipart:
            continue
        content = split.content(part)
        if content is not None:
            assert content == content_of(parsed, part), (part.section, raw[:300])
    return True


def test_the_bench_mix_is_read_fast_and_as_the_stdlib_reads_it() -> None:
    """Plain text, text + HTML, and mixed with an attachment: what most mailboxes hold."""
    assert all(_agrees(raw) for raw in generate(300))


def test_the_suites_samples_and_cpythons_odd_messages_agree_where_they_are_read_fast() -> None:
    corpus = [data for data, _names in HOSTILE.values()] + [data for _name, data in cpython_corpus()]
    corpus += [simple("s", attachments={"a.pdf": b"%PDF", "b.txt": b"hi"}, html="<b>x</b>")]
    taken = sum(_agrees(raw) for raw in corpus)
    assert taken >= len(corpus) // 3  # the rest is odd on purpose, and goes to the stdlib


def test_fuzzed_mail_agrees_wherever_it_is_read_fast() -> None:
    mutated = list(itertools.islice(fuzzing.mutations(20261203, 3000), 3000))
    taken = sum(_agrees(raw) for raw in mutated)
    assert taken >= 300  # enough of them read fast that the comparison means something


@pytest.mark.parametrize(
    "raw",
    [
        # folded parameters, a quoted boundary with spaces, a preamble and an epilogue, LF line ends
        b'Content-Type: multipart/mixed;\n\tboundary="a b c"\n\npreamble\n--a b c\n\nno header: text/plain\n'
        b"--a b c  \nContent-Type: text/html; charset=utf-8\n\n<p>x</p>\n\n--a b c--\nepilogue\n",
        # RFC 2231 file names, a nested alternative, base64 and quoted-printable, a close without line end
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/alternative; boundary=i\r\n"
        b"\r\n--i\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n--i--\r\n--o\r\n"
        b"Content-Type: application/pdf; name*0=a; name*1=b.pdf\r\nContent-Disposition: attachment;\r\n"
        b" filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--o--",
        # a boundary lookalike inside a part, an empty part body, a Content-ID, a bare parameter
        b"Content-Type: multipart/related; boundary=b; weird\r\n\r\n--b\r\nContent-ID: <c@x>\r\n\r\n--bx\r\n"
        b"--b-\r\n\r\n--b\r\nContent-Type: image/png\r\n\r\n\r\n--b--\r\n",
    ],
)
def test_edge_cases_it_takes_agree(raw: bytes) -> None:
    assert _agrees(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"Subject: a lone CR\r\n\r\none\rtwo\r\n",
        b"Subject: mixed\r\n\nline\n",
        b"From sender Mon Dec 1 2026\nSubject: mbox\n\nbody\n",
        b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nx\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nno close\r\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\ntwice\r\n--b--\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary\r\n",
        b"Subject: broken\r\nnot a field\r\n\r\nbody\r\n",
        b'Content-Type: text/plain; name="caf\xc3\xa9"\r\n\r\n8-bit in a MIME field\r\n',
    ],
)
def test_what_it_does_not_read_exactly_goes_to_the_stdlib(raw: bytes) -> None:
    assert split_raw(raw) is None
    message = Message.from_bytes(raw)  # and reads as before
    assert message.structure is not None


def test_a_message_read_fast_gives_the_same_text_and_attachments_as_before() -> None:
    raw = simple("fast", attachments={"report.pdf": b"%PDF-1.4 x"}, html="<b>hi</b>")
    assert split_raw(raw) is not None
    message = Message.from_bytes(raw)
    assert message.attachment_names == ["report.pdf"]
    assert message.part_content(message.attachments()[0]) == b"%PDF-1.4 x"
    assert message.text == "Hello.\n"
    assert message.html == "<b>hi</b>\n"
