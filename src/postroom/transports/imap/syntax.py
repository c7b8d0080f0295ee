"""Writing IMAP arguments safely: quoted strings, mailbox names, UID sets."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from postroom.transports.imap.utf7 import encode_mailbox
from postroom.validation import check_one_line

__all__ = ["chunked", "copyuid", "expand_uid_set", "mailbox_arg", "quote", "uid_set"]


def quote(value: str) -> str:
    """An RFC 3501 quoted string. Refuses NUL, CR and LF, which would split a command."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("an IMAP argument cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_arg(name: str) -> str:
    """A mailbox name as a command argument: modified UTF-7, quoted (a line break would be encoded
    rather than refused by UTF-7, so it is refused first)."""
    return quote(encode_mailbox(check_one_line("folder", name, hint="give the folder's name on one line")))


def uid_set(uids: Iterable[int]) -> str:
    """``[1, 2, 3, 7, 9, 10]`` → ``"1:3,7,9:10"``."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("empty UID set")
    ranges = []
    start = previous = ordered[0]
    for uid in ordered[1:]:
        if uid == previous + 1:
            previous = uid
            continue
        ranges.append(f"{start}:{previous}" if previous != start else str(start))
        start = previous = uid
    ranges.append(f"{start}:{previous}" if previous != start else str(start))
    return ",".join(ranges)


def chunked(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def copyuid(untagged_ok: list[Any], data: list[Any]) -> tuple[int, dict[int, int]] | None:
    """(UIDVALIDITY, source UID → new UID) from a ``[COPYUID ...]`` code (UIDPLUS), tagged or untagged."""
    texts = [d for d in data if isinstance(d, bytes)]
    texts += [d for d in untagged_ok if isinstance(d, bytes)]
    for text in texts:
        match = re.search(rb"\[COPYUID (\d+) ([\d:,]+) ([\d:,]+)\]", text)
        if match:
            return int(match.group(1)), dict(
                zip(expand_uid_set(match.group(2)), expand_uid_set(match.group(3)), strict=False)
            )
    return None


def expand_uid_set(uid_set_text: bytes) -> list[int]:
    out: list[int] = []
    for piece in uid_set_text.split(b","):
        low, _, high = piece.partition(b":")
        start, end = int(low), int(high or low)
        step = 1 if end >= start else -1
        out.extend(range(start, end + step, step))
    return out
