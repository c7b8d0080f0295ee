"""One package per protocol, all behind the :class:`~postroom.transports.contract.Mailbox` contract.

A new protocol is one new package that calls :func:`~postroom.transports.registry.register`,
plus its import below.
"""

from postroom.transports import ews, graph, imap, pop3  # noqa: F401  # each registers its backend
from postroom.transports.contract import Folder, ItemResult, ItemStatus, Mailbox, ServerReport
from postroom.transports.registry import Backend, backend, backend_for, backends, register

__all__ = [
    "Backend",
    "Folder",
    "ItemResult",
    "ItemStatus",
    "Mailbox",
    "ServerReport",
    "backend",
    "backend_for",
    "backends",
    "register",
]
