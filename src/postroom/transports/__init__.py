"""One module per protocol, all behind the :class:`~postroom.transports.base.Mailbox` contract.

A new protocol is one new module plus one entry in :data:`TRANSPORTS`.
"""

from __future__ import annotations

from collections.abc import Callable

from postroom.auth.base import Login
from postroom.config import EmailServer
from postroom.transports.base import Features, Folder, ItemResult, Mailbox, ServerReport
from postroom.transports.imap import ImapMailbox
from postroom.transports.pop3 import Pop3Mailbox

__all__ = [
    "TRANSPORTS",
    "TRANSPORT_FEATURES",
    "Features",
    "Folder",
    "ItemResult",
    "Mailbox",
    "ServerReport",
    "make_mailbox",
]

#: protocol name → factory of an unopened :class:`Mailbox`.
TRANSPORTS: dict[str, Callable[[EmailServer, Login], Mailbox]] = {
    "imap": ImapMailbox,
    "pop3": Pop3Mailbox,
}


#: protocol name → what it can do, known before connecting.
TRANSPORT_FEATURES: dict[str, Features] = {"imap": ImapMailbox.features, "pop3": Pop3Mailbox.features}


def make_mailbox(config: EmailServer, login: Login) -> Mailbox:
    """An unopened mailbox for ``config``'s protocol."""
    return TRANSPORTS[config.protocol](config, login)
