"""Exchange Web Services (SOAP over HTTPS) through exchangelib, imported only when a session opens."""

from postroom.config.ews import EWS_SETTINGS, Ews
from postroom.transports.ews.keys import EwsKey
from postroom.transports.imap import MAIL_AUTH_KINDS
from postroom.transports.registry import Backend, lazy, register

__all__ = ["BACKEND"]

BACKEND = register(
    Backend(
        protocol="ews",
        label="EWS",
        config_type=Ews,
        mailbox=lazy("postroom.transports.ews.mailbox:EwsMailbox", extra="ews", feature="EWS"),
        key_type=EwsKey,
        settings=EWS_SETTINGS,
        auth_kinds=MAIL_AUTH_KINDS | {"ntlm"},
        summary="Exchange Web Services",
        default_oauth_provider="microsoft365",
    )
)
