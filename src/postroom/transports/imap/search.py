"""A :class:`~postroom.filters.MessageFilter` rendered as IMAP SEARCH criteria.

The server only *narrows* the set: every criterion sent is a superset of what the
filter means (IMAP matching is case-insensitive substring, on whole days; a term
full case folding reads differently goes as a piece the server surely matches, see
:func:`~postroom.filters.server_term`), and the
filter decides exactly on the client afterwards. So a criterion the server cannot
take (a regex, a second non-ASCII term, a charset the server refuses) is simply
left to the client. Every string goes out quoted, or as the one literal imaplib
can send; nothing is pasted into the command raw.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from postroom.filters import MessageFilter, server_term
from postroom.transports.imap.syntax import quote

__all__ = ["SearchCriteria", "search_criteria"]

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class SearchCriteria:
    """Arguments for ``UID SEARCH``: ``args`` then, if any, ``literal`` as the last (UTF-8) term."""

    args: tuple[str, ...]
    literal: bytes | None = None

    @property
    def charset(self) -> str | None:
        return "UTF-8" if self.literal is not None else None

    def without_literal(self) -> SearchCriteria:
        """The same search minus its non-ASCII term (after a BADCHARSET reply)."""
        args = self.args[:-1] if self.literal is not None else self.args
        return SearchCriteria(args or ("ALL",))


def _date(value: dt.date) -> str:
    return f"{value.day}-{_MONTHS[value.month - 1]}-{value.year}"


def _server_safe(term: str) -> bool:
    """Terms whose meaning the server shares: no address punctuation that spans name and address."""
    return not any(ch in term for ch in '<>"')


def search_criteria(filter_: MessageFilter) -> SearchCriteria:
    args: list[str] = []
    literal: tuple[str, bytes] | None = None
    if filter_.status == "unread":
        args.append("UNSEEN")
    elif filter_.status == "read":
        args.append("SEEN")
    if filter_.since_at is not None:  # a day early: the server's day boundary may be in another time zone
        args += ["SINCE", _date(filter_.since_at.date() - dt.timedelta(days=1))]
    if filter_.before_at is not None:
        args += ["BEFORE", _date(filter_.before_at.date() + dt.timedelta(days=2))]

    def add(key: str, wanted: str) -> None:
        nonlocal literal
        term = server_term(wanted, case_sensitive=filter_.case_sensitive)
        if term is None:
            return  # no piece the server is sure to match: the client decides alone
        if term.isascii():
            args.extend([key, quote(term)])
        elif literal is None:
            literal = (key, term.encode("utf-8"))

    if not filter_.regex:
        if filter_.subject:
            add("SUBJECT", filter_.subject)
        senders = [s for s in filter_.senders if _server_safe(s)]
        terms = [server_term(s, case_sensitive=filter_.case_sensitive) for s in senders]
        if len(senders) == len(filter_.senders) and senders and None not in terms:
            if len(senders) == 1:
                add("FROM", senders[0])
            elif all(t is not None and t.isascii() for t in terms):
                pieces = [t for t in terms if t is not None]
                expression = ["FROM", quote(pieces[-1])]
                for piece in reversed(pieces[:-1]):
                    expression = ["OR", "FROM", quote(piece), *expression]
                args.extend(expression)
    if literal is not None:
        key, data = literal
        return SearchCriteria((*args, key) if args or key else (key,), data)
    return SearchCriteria(tuple(args) or ("ALL",))
