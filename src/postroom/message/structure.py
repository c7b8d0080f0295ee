"""The MIME structure of a message, independent of the protocol that described it.

IMAP describes it with BODYSTRUCTURE (without downloading the message); POP3 and
saved ``.eml`` files describe it by parsing the raw bytes. Both become the same
:class:`MimePart` tree, numbered the IMAP way (``"1"``, ``"1.2"``, ...), and the
same rules then pick the text body and the attachments.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import email.utils
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from postroom.message.cached import cached
from postroom.message.decode import decode_body, decode_text, decode_words
from postroom.message.headers import header_length

__all__ = [
    "ASCII_ENCODINGS",
    "MAX_NESTING",
    "MimePart",
    "content_of",
    "cut_off_part",
    "decode_params",
    "header_params",
    "parse_raw",
    "part_by_section",
    "structure_of",
]

#: Parts nested deeper than this are not described (a hostile message could otherwise exhaust the stack).
MAX_NESTING = 100


@dataclass(frozen=True)
class MimePart:
    """One MIME part. ``section`` is its IMAP section number ("" for a non-multipart message's root)."""

    section: str
    content_type: str
    params: dict[str, str] = field(default_factory=dict)
    disposition: str | None = None
    disposition_params: dict[str, str] = field(default_factory=dict)
    encoding: str = "7bit"
    size: int = 0
    content_id: str | None = None
    children: tuple[MimePart, ...] = ()
    #: The transport's own id for this part where it addresses parts by id, not by section (an EWS or Graph
    #: attachment id); never shown, never compared.
    handle: str | None = field(default=None, compare=False, repr=False)

    @cached
    def maintype(self) -> str:
        return self.content_type.partition("/")[0]

    @property
    def is_multipart(self) -> bool:
        return self.maintype == "multipart"

    @property
    def is_message(self) -> bool:
        return self.content_type in {"message/rfc822", "message/global"}

    @property
    def charset(self) -> str | None:
        return self.params.get("charset")

    @property
    def filename(self) -> str | None:
        """The decoded file name: disposition ``filename`` (RFC 2231), else the type's ``name``."""
        raw = self.disposition_params.get("filename") or self.params.get("name")
        if raw is None:
            return None
        return decode_words(raw) if "=?" in raw else raw

    @property
    def fetch_section(self) -> str:
        """The section to fetch for this part's content (``"1"`` for a single-part message)."""
        return self.section or "1"

    def walk(self) -> Iterator[MimePart]:
        yield self
        for child in self.children:
            yield from child.walk()

    # -- what a bot wants from a structure ------------------------------------------------

    def body_parts(self) -> tuple[MimePart | None, MimePart | None]:
        """The first text/plain and the first text/html part that are bodies, not attachments."""
        return self._bodies

    @cached
    def _bodies(self) -> tuple[MimePart | None, MimePart | None]:
        plain: MimePart | None = None
        html: MimePart | None = None
        for part in self._leaves:
            if part.is_attachment() or part.maintype != "text":
                continue
            if part.content_type == "text/plain" and plain is None:
                plain = part
            elif part.content_type == "text/html" and html is None:
                html = part
        return plain, html

    def attachments(self, *, include_inline: bool = False) -> list[MimePart]:
        """Parts that are files: attachments (and inline files such as images, on request).

        An attached message (message/rfc822) counts as one attachment; its own parts
        are not listed here.
        """
        plain, html = self.body_parts()
        bodies = {id(plain), id(html)}
        found = []
        for part in self._leaves:
            if id(part) in bodies:
                continue
            if part.is_attachment() or (include_inline and part.is_inline_file()):
                found.append(part)
        return found

    def is_attachment(self) -> bool:
        if self.is_multipart:
            return False
        if self.disposition == "attachment" or self.is_message:
            return True
        if self.disposition == "inline":
            return False
        # No Content-Disposition: a named non-text part is a file; so is any non-text, non-inline leaf.
        return self.filename is not None and not (self.maintype == "text" and self.content_id)

    def is_inline_file(self) -> bool:
        return not self.is_multipart and self.maintype != "text" and not self.is_attachment()

    @cached
    def _leaves(self) -> tuple[MimePart, ...]:
        """The leaf parts in order; an attached message is one leaf (its own parts are not walked)."""
        if not self.is_multipart:
            return (self,)
        return tuple(leaf for child in self.children for leaf in child._leaves)


def decode_params(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Parameters with lower-case names, RFC 2231 continuations joined and charsets decoded."""
    plain: dict[str, str] = {}
    pieces: dict[str, list[tuple[int, bool, str]]] = {}
    for raw_name, value in pairs:
        name = raw_name.strip().lower()
        if "*" not in name:
            plain[name] = value
            continue
        base, _, rest = name.partition("*")
        encoded = rest.endswith("*") or rest == ""
        index_text = rest.rstrip("*")
        index = int(index_text) if index_text.isdigit() else 0
        pieces.setdefault(base, []).append((index, encoded, value))
    for base, parts in pieces.items():
        parts.sort()
        charset = None
        text = ""
        for position, (_index, encoded, value) in enumerate(parts):
            if encoded and position == 0 and value.count("'") >= 2:
                charset, _language, value = value.split("'", 2)
            if encoded:
                text += _percent_decode(value, charset or "utf-8")
            else:
                text += value
        plain[base] = text
    return plain


def _percent_decode(value: str, charset: str) -> str:
    from urllib.parse import unquote_to_bytes

    return decode_text(unquote_to_bytes(value), charset)


# A parameter: name, then a quoted or a bare value (what the stdlib's own splitter reads, without its failures).
_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)')


def header_params(message: email.message.Message, header: str) -> list[tuple[str, str]]:
    """A header's parameters as text; the stdlib already joined RFC 2231 continuations. Parameters the
    stdlib fails on (``name*0=a; name*=b``, a NUL in a charset) are read plainly instead, and joined by
    :func:`decode_params`."""
    try:
        raw = message.get_params(failobj=[], header=header, unquote=True) or []
        pairs = []
        for name, value in raw[1:]:
            if isinstance(value, tuple):
                value = email.utils.collapse_rfc2231_value(value)
            pairs.append((name, str(value)))
        return pairs
    except Exception:  # the stdlib's parameter code raises a dozen kinds on hostile input
        text = header_text(message, header) or ""
        return [(name, email.utils.unquote(value.strip())) for name, value in _PARAM.findall(text)]


def header_text(message: email.message.Message, name: str) -> str | None:
    """A header of a parsed message as text: an 8-bit value comes back from the stdlib as a ``Header``."""
    value = message.get(name)
    if value is None or isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # a Header with an unusable charset
        return None


def cut_off_part(section: str, defects: list[str] | None) -> MimePart:
    """What stands for a part nested deeper than :data:`MAX_NESTING`: an empty leaf, and a defect."""
    if defects is not None:
        defects.append(f"MIME parts nested more than {MAX_NESTING} levels deep are not listed")
    return MimePart(section=section, content_type="application/octet-stream")


#: A header field's first line (RFC 5322 §2.2: printable ASCII but the colon, then a colon), or a folded one.
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+[ \t]*:|[ \t]")


def _without_broken_header_lines(raw: bytes, defects: list[str] | None) -> bytes:
    """``raw`` without the lines of its header section that are not header fields.

    The stdlib ends the header section at the first such line and reads the rest as
    the body; IMAP servers (Dovecot) skip it and read headers up to the empty line.
    Skipping it here too makes a POP3, ``.eml`` or in-memory message read as IMAP reads it.
    """
    length = header_length(raw)
    if length is None:
        return raw  # no empty line: where the header ends is anyone's guess, and the stdlib's is kept
    head = raw[:length]
    lines = head.splitlines(keepends=True)
    kept = [
        line
        for number, line in enumerate(lines)
        if _HEADER_LINE.match(line) or (number == 0 and line.startswith(b"From ")) or not line.strip()
    ]
    if len(kept) == len(lines):
        return raw
    if defects is not None:
        defects.append(f"{len(lines) - len(kept)} line(s) in the header without a field name were skipped")
    return b"".join(kept) + raw[len(head) :]


def parse_raw(raw: bytes, defects: list[str] | None = None) -> email.message.Message:
    """``raw`` parsed by the stdlib (``compat32``: bytes kept as sent). A message nested too deeply
    for the stdlib's recursive parser keeps its body whole, with a defect, instead of raising."""
    raw = _without_broken_header_lines(raw, defects)
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:
        problem = "MIME parts nested too deeply to parse"
    except Exception as error:  # the stdlib parser on hostile input; the headers still count
        problem = f"the MIME structure cannot be parsed ({type(error).__name__})"
    if defects is not None:
        defects.append(f"{problem}; the body is kept whole")
    try:
        return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    except Exception:
        return email.message.Message()


def structure_of(
    message: email.message.Message, section: str = "", defects: list[str] | None = None, *, depth: int = 0
) -> MimePart:
    """The :class:`MimePart` tree of a parsed message, numbered as IMAP numbers it (cut off below MAX_NESTING)."""
    if depth >= MAX_NESTING:
        return cut_off_part(section, defects)
    content_type = message.get_content_type()
    params = decode_params(header_params(message, "content-type"))
    disposition_header = message.get("Content-Disposition")
    disposition = None
    disposition_params: dict[str, str] = {}
    if disposition_header is not None:
        disposition = (message.get_content_disposition() or "").lower() or None
        disposition_params = decode_params(header_params(message, "content-disposition"))
    children: tuple[MimePart, ...] = ()
    if message.is_multipart() and content_type.startswith("multipart/"):
        payload = message.get_payload()
        assert isinstance(payload, list)
        prefix = f"{section}." if section else ""
        children = tuple(
            structure_of(child, f"{prefix}{n}", defects, depth=depth + 1) for n, child in enumerate(payload, start=1)
        )
    elif content_type in {"message/rfc822", "message/global"} and message.is_multipart():
        inner = message.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], email.message.Message):
            inner_section = section or "1"
            inner_at = inner_section if inner[0].is_multipart() else f"{inner_section}.1"
            child = structure_of(inner[0], inner_at, defects, depth=depth + 1)
            children = (child,)
    return MimePart(
        section=section,
        content_type=content_type,
        params=params,
        disposition=disposition,
        disposition_params=disposition_params,
        encoding=(header_text(message, "Content-Transfer-Encoding") or "7bit").strip().lower(),
        size=0,
        content_id=(header_text(message, "Content-ID") or None),
        children=children,
    )


def part_by_section(message: email.message.Message, section: str) -> email.message.Message | None:
    """The part at an IMAP section number; ``"1"`` of a single-part message is the message itself."""
    current = message
    if not section:
        return current
    for number in section.split("."):
        index = int(number) - 1 if number.isdigit() else -1
        if current.get_content_type() in {"message/rfc822", "message/global"}:
            inner = current.get_payload()
            if not isinstance(inner, list) or not inner or not isinstance(inner[0], email.message.Message):
                return None
            current = inner[0]  # step into the attached message
        if current.is_multipart():
            payload = current.get_payload()
            if not isinstance(payload, list) or not 0 <= index < len(payload):
                return None
            child = payload[index]
            if not isinstance(child, email.message.Message):
                return None
            current = child
        elif index != 0:
            return None
    return current


# Transfer encodings whose content is ASCII (the stdlib's decode=True would undo the uu ones, which IMAP leaves as is).
ASCII_ENCODINGS = frozenset({"base64", "quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"})


def content_of(message: email.message.Message, part: MimePart, memo: dict[int, bytes] | None = None) -> bytes:
    """The content of ``part`` in a parsed message, transfer encoding undone; an attached email as its bytes
    (built once per level with ``memo``, for many emails nested in one another: see :func:`message_bytes`)."""
    found = part_by_section(message, part.section)
    if found is None:
        return b""
    if found.is_multipart():  # an attached message (or a multipart asked for as a leaf)
        payload = found.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        return message_bytes(inner, memo) if part.is_message and isinstance(inner, email.message.Message) else b""
    if part.encoding not in ASCII_ENCODINGS:
        return _decoded_payload(found)  # the bytes as sent (decode=False would decode 8-bit text)
    try:  # encoded ASCII, decoded here as on IMAP (the same result for broken base64 on every protocol)
        text = found.get_payload(decode=False)
        if not isinstance(text, str):
            return _decoded_payload(found)
        data = text.encode("ascii", "surrogateescape")
    except Exception:  # 8-bit bytes where only ASCII belongs, decoded by a charset that fails
        return _decoded_payload(found)
    return decode_body(data, part.encoding)


def _decoded_payload(part: email.message.Message) -> bytes:
    try:
        raw = part.get_payload(decode=True)
    except Exception:  # the stdlib's uu and charset code on hostile input
        return b""
    return bytes(raw) if isinstance(raw, bytes | bytearray) else b""


def message_bytes(message: email.message.Message, memo: dict[int, bytes] | None = None) -> bytes:
    """A parsed message as bytes again; by a plain walk where the stdlib's generator fails (nesting deeper
    than its recursion, a header it cannot fold, a charset it cannot encode). With ``memo`` (for many
    messages nested in one another) it is always the plain walk, which builds each level once."""
    if memo is None:
        try:
            return message.as_bytes()
        except Exception:  # RecursionError, UnicodeError, HeaderParseError, ...
            memo = {}
    return _plain_bytes(message, memo)


def _plain_bytes(root: email.message.Message, memo: dict[int, bytes]) -> bytes:
    """Headers as parsed, then the body: a leaf's as sent, a multipart's parts between its boundaries.
    Built bottom-up with a stack, not recursion (the message may nest thousands deep)."""
    work: list[tuple[email.message.Message, bool]] = [(root, False)]
    while work:
        item, children_done = work.pop()
        if id(item) in memo:
            continue
        children = (
            [child for child in item.get_payload() if isinstance(child, email.message.Message)]
            if item.is_multipart()
            else []
        )
        if not children_done and children:
            work.append((item, True))
            work.extend((child, False) for child in children)
            continue
        head = b"".join(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape") for name, value in item.raw_items())
        memo[id(item)] = head + b"\r\n" + _body_bytes(item, [memo[id(child)] for child in children])
    return memo[id(root)]


def _body_bytes(item: email.message.Message, children: list[bytes]) -> bytes:
    if not item.is_multipart():
        return _leaf_bytes(item)
    boundary = dict(header_params(item, "content-type")).get("boundary")
    if boundary is None or not item.get_content_type().startswith("multipart/"):
        return b"".join(children)  # an attached message: its one part, as it is
    delimiter = f"--{boundary}".encode("utf-8", "surrogateescape")
    preamble = (item.preamble or "").encode("utf-8", "surrogateescape")
    body = preamble + b"".join(delimiter + b"\r\n" + child + b"\r\n" for child in children)
    return body + delimiter + b"--\r\n" + (item.epilogue or "").encode("utf-8", "surrogateescape")


def _leaf_bytes(part: email.message.Message) -> bytes:
    try:
        text = part.get_payload(decode=False)
    except Exception:
        return _decoded_payload(part)
    if isinstance(text, str):
        return text.encode("utf-8", "surrogateescape")
    return bytes(text) if isinstance(text, bytes | bytearray) else b""
