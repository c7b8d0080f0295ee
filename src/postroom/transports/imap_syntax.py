"""Writing IMAP arguments safely: quoted strings, mailbox names, UID sets."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from postroom.transports.imap_utf7 import encode_mailbox

__all__ = ["chunked", "mailbox_arg", "quote", "uid_set"]


def quote(value: str) -> str:
    """An RFC 3501 quoted string. Refuses NUL, CR and LF, which would split a command."""
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError("an IMAP argument cannot contain CR, LF or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mailbox_arg(name: str) -> str:
    """A mailbox name as a command argument: modified UTF-7, quoted."""
    return quote(encode_mailbox(name))


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
