"""Outlook: Microsoft 365 mailboxes through Microsoft Graph's REST API (httpx), imported when a session opens."""

from postroom.config.outlook import OUTLOOK_SETTINGS, Outlook
from postroom.transports.graph.keys import GraphKey
from postroom.transports.registry import Backend, lazy, register

__all__ = ["BACKEND", "GRAPH_AUTH_KINDS"]

#: Graph takes bearer tokens only: no Basic, no NTLM.
GRAPH_AUTH_KINDS = frozenset({"oauth2-pkce", "oauth2-client-credentials", "oauth2-ropc", "oauth2-implicit", "managed"})

BACKEND = register(
    Backend(
        protocol="outlook",
        label="Outlook",
        config_type=Outlook,
        mailbox=lazy("postroom.transports.graph.mailbox:GraphMailbox", extra="outlook", feature="Outlook"),
        key_type=GraphKey,
        settings=OUTLOOK_SETTINGS,
        auth_kinds=GRAPH_AUTH_KINDS,
        summary="Microsoft 365 through Microsoft Graph (own and shared mailboxes)",
        default_oauth_provider="microsoft365",
    )
)
