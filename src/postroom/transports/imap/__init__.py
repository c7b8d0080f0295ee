"""IMAP4rev1 (RFC 3501) with UIDPLUS, MOVE, LITERAL+ where offered: the richest mailbox transport."""

from postroom.config.email_server import EMAIL_SERVER_SETTINGS, EmailServer
from postroom.transports.imap.keys import ImapKey
from postroom.transports.registry import Backend, lazy, register

__all__ = ["BACKEND"]

MAIL_AUTH_KINDS = frozenset(
    {"basic", "oauth2-pkce", "oauth2-client-credentials", "oauth2-ropc", "oauth2-implicit", "managed"}
)

BACKEND = register(
    Backend(
        protocol="imap",
        label="IMAP",
        config_type=EmailServer,
        mailbox=lazy("postroom.transports.imap.mailbox:ImapMailbox"),
        key_type=ImapKey,
        settings=EMAIL_SERVER_SETTINGS,
        auth_kinds=MAIL_AUTH_KINDS,
        summary="folders, read status, server-side moves",
    )
)
