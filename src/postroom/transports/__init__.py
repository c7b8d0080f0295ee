"""One module per protocol, all behind the :class:`~postroom.transports.base.Mailbox` contract.

A new protocol is one new module plus one entry in :data:`TRANSPORTS`.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.auth.base import PasswordLogin
from postroom.config import EmailServer
from postroom.transports.base import Mailbox, ServerReport
from postroom.transports.imap import ImapMailbox
from postroom.transports.pop3 import Pop3Mailbox

__all__ = ["TRANSPORTS", "Mailbox", "ServerReport", "make_mailbox"]

#: protocol name → factory of an unopened :class:`Mailbox`.
TRANSPORTS: dict[str, Callable[[EmailServer, PasswordLogin], Mailbox]] = {
    "imap": ImapMailbox,
    "pop3": Pop3Mailbox,
}


def make_mailbox(config: EmailServer, login: PasswordLogin) -> Mailbox:
    """An unopened mailbox for ``config``'s protocol."""
    return TRANSPORTS[config.protocol](config, login)
