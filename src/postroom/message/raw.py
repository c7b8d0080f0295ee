"""Messages held as raw bytes: an ``.eml`` file, a POP3 RETR, the in-memory mailbox.

:class:`RawSource` serves a message's parts from its bytes (parsed once, lazily), and
:func:`summary_of_raw` describes it as a loop does. Nothing here raises on malformed
mail: what cannot be read is recorded as a defect.
"""

from __future__ import annotations

import datetime as dt
import email.message
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from postroom.message.headers import header_length
from postroom.message.keys import MessageKey
from postroom.message.mime_split import SplitMessage, split_raw
from postroom.message.structure import MimePart, content_of, parse_raw, structure_of
from postroom.message.summary import MessageSummary

__all__ = ["EmlKey", "RawSource", "header_block_of", "summary_of_raw"]


@dataclass(frozen=True, order=True, slots=True)
class EmlKey(MessageKey, scheme="eml"):
    """``eml:<sha256 prefix>``: a message read from bytes, outside any mailbox."""

    digest: str

    def __str__(self) -> str:
        return f"eml:{self.digest}"

    @property
    def folder(self) -> str:  # type: ignore[override]  # a constant where other keys have a field
        return ""

    @property
    def id(self) -> str:
        return self.digest

    @classmethod
    def from_text(cls, text: str) -> EmlKey | None:
        return cls(text) if text else None

    @classmethod
    def of(cls, raw: bytes) -> EmlKey:
        return cls(hashlib.sha256(raw).hexdigest()[:32])


def header_block_of(raw: bytes) -> bytes:
    """The header block of ``raw``: everything up to the first empty line (all of it if there is none)."""
    length = header_length(raw)
    return raw if length is None else raw[:length]


def summary_of_raw(
    key: MessageKey, raw: bytes, *, flags: frozenset[str] | None = None, received: dt.datetime | None = None
) -> MessageSummary:
    """``raw`` described as a loop describes a message (its structure comes from the stdlib's parse when read)."""
    return MessageSummary(key=key, header=header_block_of(raw), flags=flags, size=len(raw), received=received)


class RawSource:
    """A :class:`~postroom.message.model.MessageSource` over messages whose bytes ``lookup`` returns.

    A message is read by :func:`~postroom.message.mime_split.split_raw` where it can, else by the stdlib's
    parser; the last one read is kept (a loop reads one message at a time)."""

    def __init__(self, lookup: Callable[[MessageKey], bytes]) -> None:
        self._lookup = lookup
        self._parsed: tuple[MessageKey, email.message.Message] | None = None
        self._split: tuple[MessageKey, SplitMessage | None] | None = None

    def raw(self, key: MessageKey) -> bytes:
        return self._lookup(key)

    def header_block(self, key: MessageKey) -> bytes:
        return header_block_of(self._lookup(key))

    def parsed(self, key: MessageKey, defects: list[str] | None = None) -> email.message.Message:
        """The message parsed by the stdlib (its defects to ``defects`` when parsed now)."""
        if self._parsed is None or self._parsed[0] != key:
            self._parsed = (key, parse_raw(self._lookup(key), defects))
        return self._parsed[1]

    def _split_of(self, key: MessageKey) -> SplitMessage | None:
        if self._split is None or self._split[0] != key:
            self._split = (key, split_raw(self._lookup(key)))
        return self._split[1]

    def structure(self, key: MessageKey, defects: list[str] | None = None) -> MimePart:
        """The message's structure (defects met while parsing go to ``defects``)."""
        split = self._split_of(key)
        if split is not None:
            return split.structure
        return structure_of(self.parsed(key, defects), "", defects)

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        split = self._split_of(key)
        content = split.content(part) if split is not None else None
        return content if content is not None else content_of(self.parsed(key), part)

    def stream_part(self, key: MessageKey, part: MimePart, sink: BinaryIO) -> int:
        data = self.part_content(key, part)
        sink.write(data)
        return len(data)
