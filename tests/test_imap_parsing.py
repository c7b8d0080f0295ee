"""IMAP response parsing on inputs servers really send, including odd ones."""

from __future__ import annotations

from postroom.filters import MessageFilter
from postroom.transports.imap.bodystructure import parse_bodystructure
from postroom.transports.imap.response import parse_fetch, tokenize
from postroom.transports.imap.search import search_criteria
from postroom.transports.imap.syntax import quote, uid_set


def test_fetch_with_literals_and_bracketed_item_names() -> None:
    data = [
        (
            b"7 (UID 42 FLAGS (\\Seen $Junk) BODY[HEADER.FIELDS (SUBJECT FROM)] {30}",
            b'Subject: a (b) "c"\r\nFrom: x\r\n\r\n',
        ),
        b' RFC822.SIZE 1234 INTERNALDATE "24-Nov-2026 10:00:00 +0100")',
        b"8 (UID 43 FLAGS () BODY[HEADER.FIELDS (SUBJECT FROM)] NIL RFC822.SIZE 0)",
    ]
    first, second = list(parse_fetch(data))  # type: ignore[arg-type]
    assert first["UID"] == b"42"
    assert first["FLAGS"] == [b"\\Seen", b"$Junk"]
    assert first["BODY[HEADER.FIELDS (SUBJECT FROM)]"] == b'Subject: a (b) "c"\r\nFrom: x\r\n\r\n'
    assert first["INTERNALDATE"] == b"24-Nov-2026 10:00:00 +0100"
    assert second["BODY[HEADER.FIELDS (SUBJECT FROM)]"] is None


def test_quoted_strings_with_escapes() -> None:
    assert tokenize([b'("a \\"quoted\\" \\\\ value" NIL atom)']) == [[b'a "quoted" \\ value', None, b"atom"]]


def test_bodystructure_nested_message_and_rfc2231() -> None:
    value = tokenize(
        [
            b'(("text" "plain" ("charset" "utf-8") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)'
            b'("message" "rfc822" NIL NIL NIL "7bit" 500 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) '
            b'(("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)("application" "pdf" ("name" "a.pdf") NIL NIL '
            b'"base64" 100 NIL ("attachment" ("filename*0*" "utf-8\'\'R%C3%A9" "filename*1*" "sum%C3%A9.pdf")) NIL NIL) '
            b'"mixed" NIL NIL NIL NIL) 20 NIL ("attachment" ("filename" "fwd.eml")) NIL NIL) "mixed" NIL NIL NIL NIL)'
        ]
    )[0]
    root = parse_bodystructure(value)
    assert [p.section for p in root.walk()] == ["", "1", "2", "2", "2.1", "2.2"]
    inner_pdf = list(root.walk())[-1]
    assert inner_pdf.filename == "Résumé.pdf"
    assert [p.filename for p in root.attachments()] == ["fwd.eml"]
    plain, html = root.body_parts()
    assert plain is not None and plain.section == "1" and html is None


def test_bodystructure_disposition_sent_as_a_string() -> None:
    value = tokenize(
        [
            b'(("text" "plain" NIL NIL NIL "7bit" 5 1 NIL NIL NIL NIL)("application" "pdf" NIL NIL NIL '
            b'"base64" 9 NIL "attachment; filename=\\"x y.pdf\\"" NIL NIL) "mixed" NIL NIL NIL NIL)'
        ]
    )[0]
    assert [p.filename for p in parse_bodystructure(value).attachments()] == ["x y.pdf"]


def test_a_hostile_bodystructure_is_cut_off_with_a_defect_not_a_crash() -> None:
    from postroom.message.structure import MAX_NESTING
    from postroom.transports.imap.response import items_of
    from postroom.transports.imap.summary import summary_from

    leaf = b'"text" "plain" NIL NIL NIL "7bit" 1 1 NIL NIL NIL NIL'
    deep = b"(" * 5000 + leaf + b")" + b' "mixed")' * 4999
    summary = summary_from(items_of([b"(UID 5 BODYSTRUCTURE " + deep + b")"]), "INBOX", 1)
    assert summary is not None and summary.structure is not None
    assert len(list(summary.structure.walk())) == MAX_NESTING + 1
    assert summary.defects == (f"MIME parts nested more than {MAX_NESTING} levels deep are not listed",)
    # a size in digits that are not ASCII (int() rejects some of them) is no size, not an exception
    odd = summary_from(items_of([b'(UID 6 BODYSTRUCTURE ("text" "plain" NIL NIL NIL "7bit" "\xc2\xb2" 1))']), "I", 1)
    assert odd is not None and odd.structure is not None and odd.structure.size == 0


def test_search_criteria_quote_everything_and_use_one_literal() -> None:
    criteria = search_criteria(MessageFilter(status="unread", subject='a "b"', senders=("x", "y")))
    assert criteria.args == ("UNSEEN", "SUBJECT", '"a \\"b\\""', "OR", "FROM", '"x"', "FROM", '"y"')
    utf8 = search_criteria(MessageFilter(subject="köln", senders=("müller",)))
    assert utf8.literal == "köln".encode() and utf8.args[-1] == "SUBJECT" and utf8.charset == "UTF-8"
    # a term full case folding reads differently goes as its safe piece: "ss" may be an ß, an "f" after a ligature
    assert search_criteria(MessageFilter(subject="Grüsse aus Köln")).literal == "e aus köln".encode()
    assert search_criteria(MessageFilter(subject=r"\d+", regex=True)).args == ("ALL",)


def test_syntax_helpers() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10, 12]) == "1:3,5,9:10,12"
    assert quote('C:\\x "y"') == '"C:\\\\x \\"y\\""'


def test_a_malformed_reply_is_a_protocol_error_not_a_crash() -> None:
    import pytest

    from postroom.errors import ProtocolError
    from postroom.transports.errors import StageTracker, mapped_errors

    where = StageTracker("imaps://h:993", "h", 993, "ssl", 1, 1, stage="command")
    with pytest.raises(ProtocolError, match="could not read the server's reply"), mapped_errors(where, "imap"):
        tokenize([b"(UID 1 FLAGS (\\Seen)"])


def test_a_tls_connection_closed_mid_session_is_a_lost_connection_not_a_handshake_failure() -> None:
    """The session reconnects on ConnectionLostError; a TLS error after login used to read "handshake failed"."""
    import ssl

    import pytest

    from postroom.errors import ConnectionLostError, TLSError
    from postroom.transports.errors import StageTracker, mapped_errors

    closed = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    where = StageTracker("imaps://h:993", "h", 993, "ssl", 1, 1, stage="command")
    with pytest.raises(ConnectionLostError, match="closed the TLS connection"), mapped_errors(where, "imap"):
        raise closed
    where.stage = "tls"
    with pytest.raises(TLSError, match="handshake"), mapped_errors(where, "imap"):
        raise closed


def test_the_fast_date_reader_agrees_with_the_stdlib_on_every_form_it_takes() -> None:
    import datetime as dt
    import email.utils
    import random

    from postroom.message.decode import parse_date

    chance = random.Random(5322)
    days = ("Mon, ", "Sun,", "")
    months = ("Jan", "feb", "MAR", "Dec", "Foo")
    zones = ("+0000", "-0000", "+0200", "-0730", "+1400", "+2400", "-9959")
    for _ in range(3000):
        text = (
            f"{chance.choice(days)}{chance.randint(0, 32)} {chance.choice(months)} {chance.randint(1969, 2100)} "
            f"{chance.randint(0, 24):02d}:{chance.randint(0, 60):02d}"
            + (f":{chance.randint(0, 61):02d}" if chance.random() < 0.8 else "")
            + f" {chance.choice(zones)}"
        )
        try:
            expected: dt.datetime | None = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            expected = None
        if expected is not None and expected.tzinfo is None:
            expected = expected.replace(tzinfo=dt.UTC)
        found = parse_date(text)
        assert found == expected and (found is None or found.utcoffset() == expected.utcoffset()), text  # type: ignore[union-attr]


def test_the_fast_summary_reader_agrees_with_the_tokenizer_on_every_shape() -> None:
    """summary_of_response reads the usual response shape by one regex; anything else goes to the
    tokenizer. Both must give equal summaries, whatever the server sends."""
    import random

    from postroom.transports.imap.response import Literal, items_of
    from postroom.transports.imap.summary import _usual_summary, summary_from, summary_of_response

    chance = random.Random(3501)

    def pick(usual: str, *others: str) -> str:
        return usual if chance.random() < 0.8 else chance.choice([usual, *others])

    def leaf() -> str:
        return " ".join(
            [
                pick('"text" "plain"', '"TEXT" "HTML"', '"application" "pdf"', '"message" "rfc822"', '"" "x"', "NIL"),
                pick(
                    '("charset" "utf-8")',
                    "NIL",
                    '("CHARSET" "UTF-8")',
                    '("name*" "x")',
                    '("n" "a\\"b")',
                    '("a" "1" "b" "2")',
                    '(" Name " "\xff")',
                ),
                pick("NIL", '"<cid@x>"', '""', "nil", '"\xc3\xa9"'),
                "NIL",
                pick('"7bit"', '"BASE64"', '""', "NIL"),
                pick("120 4", "120", '"x"', "\xc2\xb2"),
                pick(
                    "NIL NIL NIL NIL",
                    "NIL NIL NIL",
                    'NIL ("attachment" ("filename" "a.pdf")) NIL NIL',
                    'NIL ("ATTACHMENT" ("FILENAME" " R.pdf")) NIL NIL',
                    'NIL ("inline" NIL) NIL NIL',
                    'NIL ("attachment" ("filename*" "utf-8\'\'%C3%A9.pdf")) NIL NIL',
                    'NIL ("attachment" ("filename" "a" "size" "3")) NIL NIL',
                    '"md5" NIL NIL NIL',
                    "",
                ),
            ]
        ).strip()

    def structure() -> str:
        if chance.random() < 0.5:
            return f"({leaf()})"
        leaves = "".join(f"({leaf()})" for _ in range(chance.choice([1, 2, 2, 3, 9])))
        if chance.random() < 0.1:
            leaves = f'({leaves} "alternative" NIL NIL NIL NIL)({leaf()})'  # nested: the general path
        tail = pick(
            '"alternative" ("boundary" "alt-1") NIL NIL NIL',
            '"MIXED" ("BOUNDARY" "b") NIL NIL NIL',
            '"mixed" NIL NIL NIL NIL',
            '"mixed" ("boundary" "b") ("inline" NIL) NIL NIL',
            '"mixed" ("boundary*" "b") NIL NIL NIL',
            '"mixed"',
            '"mixed" ("boundary" "b")',
        )
        return f"({leaves} {tail})"

    fast = compared = multipart_fast = 0
    for _ in range(6000):
        flags = pick("\\Seen", "", "\\Seen \\Flagged $Fwd", "NIL", "nil", "NILx", "$a[b]", "\\Seen  $x", "J%")
        line = (
            f"({pick('UID 7', 'uid 7', 'UID x')} FLAGS ({flags}) RFC822.SIZE {pick('99', 'NIL')} "
            f'INTERNALDATE "{pick("24-Nov-2026 10:00:00 +0100", "junk")}" BODYSTRUCTURE {structure()} '
            f"BODY[HEADER.FIELDS (SUBJECT FROM)] "
        ).encode("utf-8", "surrogateescape")
        tail = chance.choice([[b")\r\n"], [b" BODY[1]<0> ", Literal(b"first"), b")\r\n"], [b" BODY[1]<0> NIL)\r\n"]])
        parts: list[bytes | Literal] = [line, Literal(b"Subject: x\r\n\r\n"), *tail]
        try:
            expected = summary_from(items_of(list(parts)), "INBOX", 5)
        except ValueError:
            continue  # malformed for the tokenizer (unbalanced): the fast path's shape is always balanced
        assert summary_of_response(list(parts), "INBOX", 5) == expected, parts
        compared += 1
        fast_one = _usual_summary(list(parts), "INBOX", 5)
        fast += fast_one is not None
        multipart_fast += fast_one is not None and fast_one.structure is not None and bool(fast_one.structure.children)
    # both paths taken often enough for the comparison to mean something, multiparts too
    assert compared > 4000 and fast > 500 and multipart_fast > 200, (compared, fast, multipart_fast)
    # a long run of flag characters that ends badly costs linear time, not exponential (a hang here is the failure)
    hostile = b"(UID 7 FLAGS (" + b"a" * 20000 + b'%) RFC822.SIZE 9 INTERNALDATE "x" BODYSTRUCTURE NIL BODY[1] NIL)'
    assert summary_of_response([hostile], "INBOX", 5) == summary_from(items_of([hostile]), "INBOX", 5)
