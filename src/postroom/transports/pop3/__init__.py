"""POP3 (RFC 1939) with UIDL, CAPA, STLS and SASL: the inbox only, no read status."""

from postroom.config.email_server import EMAIL_SERVER_SETTINGS, EmailServer
from postroom.transports.imap import MAIL_AUTH_KINDS
from postroom.transports.pop3.keys import Pop3Key
from postroom.transports.registry import Backend, lazy, register

__all__ = ["BACKEND"]

BACKEND = register(
    Backend(
        protocol="pop3",
        label="POP3",
        config_type=EmailServer,
        mailbox=lazy("postroom.transports.pop3.mailbox:Pop3Mailbox"),
        key_type=Pop3Key,
        settings=EMAIL_SERVER_SETTINGS,
        auth_kinds=MAIL_AUTH_KINDS,
        summary="the inbox only",
    )
)
