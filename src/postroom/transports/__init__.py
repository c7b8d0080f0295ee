"""One module per protocol, all behind the :class:`~postroom.transports.base.Mailbox` contract.

A new protocol is one new module plus one entry in :data:`TRANSPORTS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from postroom.auth.base import Login
from postroom.config import EmailServer
from postroom.config.ews import Ews
from postroom.transports.base import EWS_FEATURES, Features, Folder, ItemResult, Mailbox, ServerReport
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


def _ews(config: Ews, login: Login) -> Mailbox:
    from postroom.transports.ews import EwsMailbox  # exchangelib takes 0.4 s to import: only when used

    return EwsMailbox(config, login)


#: protocol name → factory of an unopened :class:`Mailbox`.
TRANSPORTS: dict[str, Callable[[Any, Login], Mailbox]] = {
    "imap": ImapMailbox,
    "pop3": Pop3Mailbox,
    "ews": _ews,
}


#: protocol name → what it can do, known before connecting.
TRANSPORT_FEATURES: dict[str, Features] = {
    "imap": ImapMailbox.features,
    "pop3": Pop3Mailbox.features,
    "ews": EWS_FEATURES,
}


def make_mailbox(config: EmailServer | Ews, login: Login) -> Mailbox:
    """An unopened mailbox for ``config``'s protocol."""
    return TRANSPORTS[config.protocol](config, login)
