"""What to select from a mailbox, as pure values.

A :class:`MessageFilter` is checked when built (a bad regular expression or date
range fails at once, naming the field). Each transport renders what its server can
search (IMAP SEARCH narrows the set); :meth:`MessageFilter.matches` then decides
exactly, on headers only, so every transport returns the same messages.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Literal, get_args

from postroom.errors import ConfigError
from postroom.validation import check_one_line

__all__ = ["MessageFilter", "Order", "Status", "server_term"]

Status = Literal["all", "read", "unread"]
Order = Literal["newest", "oldest"]


def _as_datetime(name: str, value: dt.date | dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.astimezone()  # naive: the machine's local time
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day).astimezone()
    raise ConfigError(name, f"expected a date or datetime, got {type(value).__name__}")


def _check_text(name: str, value: str) -> str:
    return check_one_line(name, value, hint="search for one line of text")


@dataclass(frozen=True, kw_only=True)
class MessageFilter:
    """Which messages a loop (or a bulk action) covers.

    ``subject`` and each of ``senders`` are substrings, or regular expressions
    when ``regex=True`` (matched with ``re.search``). A sender matches on the
    display name and the address (``Name <address>``). ``since`` is inclusive,
    ``before`` exclusive, both on the received date. ``limit`` takes the first N
    matches in ``order``.
    """

    folder: str = "INBOX"
    include_subfolders: bool = False
    status: Status = "all"
    subject: str | None = None
    senders: tuple[str, ...] = ()
    since: dt.date | None = None
    before: dt.date | None = None
    regex: bool = False
    case_sensitive: bool = False
    order: Order = "newest"
    limit: int | None = None
    _patterns: tuple[re.Pattern[str] | None, tuple[re.Pattern[str], ...]] = field(
        default=(None, ()), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.status not in get_args(Status):
            raise ConfigError("status", f"{self.status!r} is not supported", hint="choose 'all', 'read' or 'unread'")
        if self.order not in get_args(Order):
            raise ConfigError("order", f"{self.order!r} is not supported", hint="choose 'newest' or 'oldest'")
        if not isinstance(self.folder, str) or not self.folder.strip():
            raise ConfigError("folder", "is empty", hint="give a folder name such as 'INBOX' or 'Inbox/Project1'")
        _check_text("folder", self.folder)
        senders = (self.senders,) if isinstance(self.senders, str) else tuple(self.senders)
        object.__setattr__(self, "senders", tuple(_check_text("senders", s) for s in senders if s))
        if self.subject is not None:
            _check_text("subject", self.subject)
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ConfigError("limit", f"{self.limit!r} is not a positive whole number", hint="leave it out for all")
        object.__setattr__(self, "since", _as_datetime("since", self.since))
        object.__setattr__(self, "before", _as_datetime("before", self.before))
        if self.since_at and self.before_at and self.since_at >= self.before_at:
            raise ConfigError("before", "is not after since", hint="since is inclusive, before is exclusive")
        flags = 0 if self.case_sensitive else re.IGNORECASE
        if self.regex:
            subject = self._compile("subject", self.subject, flags) if self.subject else None
            sender_patterns = tuple(self._compile("senders", s, flags) for s in self.senders)
            object.__setattr__(self, "_patterns", (subject, sender_patterns))

    @staticmethod
    def _compile(name: str, pattern: str, flags: int) -> re.Pattern[str]:
        try:
            return re.compile(pattern, flags)
        except re.error as exc:
            raise ConfigError(name, f"{pattern!r} is not a valid regular expression ({exc})") from None

    @property
    def since_at(self) -> dt.datetime | None:
        """``since`` as an aware datetime (dates and naive times are taken in local time)."""
        return self.since if isinstance(self.since, dt.datetime) else None

    @property
    def before_at(self) -> dt.datetime | None:
        return self.before if isinstance(self.before, dt.datetime) else None

    @property
    def covers_one_folder(self) -> bool:
        """True when the loop covers exactly one folder: no wildcard, no subfolders (what a folder's state or a
        sync position can speak for)."""
        return not self.include_subfolders and not any(ch in self.folder for ch in "*%")

    @property
    def searches_headers(self) -> bool:
        """True when deciding needs subject or sender text."""
        return bool(self.subject or self.senders)

    def _contains(self, needle: str, haystack: str) -> bool:
        if self.case_sensitive:
            return needle in haystack
        return needle.casefold() in haystack.casefold()

    def matches_subject(self, subject: str) -> bool:
        if self.subject is None:
            return True
        if self.regex:
            pattern = self._patterns[0]
            return pattern is not None and pattern.search(subject) is not None
        return self._contains(self.subject, subject)

    def matches_sender(self, sender: str) -> bool:
        if not self.senders:
            return True
        if self.regex:
            return any(p.search(sender) for p in self._patterns[1])
        return any(self._contains(s, sender) for s in self.senders)

    def matches_status(self, seen: bool | None) -> bool:
        if self.status == "all" or seen is None:
            return True
        return seen if self.status == "read" else not seen

    def matches_date(self, received: dt.datetime | None) -> bool:
        since, before = self.since_at, self.before_at
        if received is None:
            return since is None and before is None
        if since is not None and received < since:
            return False
        return not (before is not None and received >= before)


@functools.cache
def _expansions() -> tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]:
    """What full case folding does that a server's simple case mapping does not: the many-character
    folds (``ß`` → ``ss``, ``ﬁ`` → ``fi``, ``İ`` → ``i̇``) and the odd ones (``ς`` → ``σ``). Returns the
    characters that may end, begin or sit inside such a fold, its adjacent pairs, and odd characters."""
    tails: set[str] = set()
    heads: set[str] = set()
    pairs: set[str] = set()
    odd: set[str] = set()
    for code in range(0x20000):  # nothing above folds (checked for every code point)
        char = chr(code)
        folded = "".join(c for c in char.casefold() if not unicodedata.category(c).startswith("M"))
        # combining marks left out: a server decomposes as it folds (İ is I and a dot above, so "i" finds it)
        if len(folded) > 1:
            heads.update(folded[:-1])
            tails.update(folded[1:])
            pairs.update(folded[n : n + 2] for n in range(len(folded) - 1))
        elif folded != char.lower():
            odd.add(folded)
    return frozenset(tails), frozenset(heads), frozenset(pairs), frozenset(odd - set("abcdefghijklmnopqrstuvwxyz"))


def server_term(term: str, *, case_sensitive: bool = False) -> str | None:
    """What a server's case-insensitive substring search may be asked for ``term`` so that it finds every
    message the client's rule (case folding) accepts: ``term`` itself, or its longest safe piece, or None.

    A server folds case character by character, so ``GRÜSSE`` does not find ``Grüße``, which full
    case folding (``grüsse``) matches. Characters that may come from a many-character fold are left
    out: at the edges, within a pair such as ``ss`` or ``fi``, and odd ones such as ``σ``.
    """
    if case_sensitive:
        return term  # the exact text: a server that ignores case finds it too
    tails, heads, pairs, odd = _expansions()
    folded = term.casefold()
    unsafe = [char in odd for char in folded]
    for at in range(len(folded) - 1):
        if folded[at : at + 2] in pairs:
            unsafe[at] = unsafe[at + 1] = True
    if folded and folded[0] in tails:
        unsafe[0] = True
    if folded and folded[-1] in heads:
        unsafe[-1] = True
    if not any(unsafe):
        return term
    runs = "".join("\0" if bad else char for char, bad in zip(folded, unsafe, strict=True)).split("\0")
    best = max(runs, key=len)
    return best if len(best.strip()) >= 3 else None
