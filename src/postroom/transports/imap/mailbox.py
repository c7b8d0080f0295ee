"""IMAP4rev1 over implicit TLS or STARTTLS, on the stdlib's ``imaplib``: the mailbox a session uses.

The parts live beside it: :mod:`.connection` (connect, login, select), :mod:`.reading`
(summaries, bodies, parts) and :mod:`.writing` (flags, moves, deletes, appends).
"""

from __future__ import annotations

from postroom.transports.imap.connection import HEADER_FIELDS
from postroom.transports.imap.reading import ImapReading
from postroom.transports.imap.watching import ImapWatching
from postroom.transports.imap.writing import ImapWriting

__all__ = ["HEADER_FIELDS", "ImapMailbox"]


class ImapMailbox(ImapReading, ImapWriting, ImapWatching):
    """An IMAP connection for one session: every ability of the contract but sending."""
