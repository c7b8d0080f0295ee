"""Connect settings for *Outlook*: Microsoft 365 mailboxes through Microsoft Graph.

``mailbox`` is ``"me"`` (the signed-in user's own) or the address of another mailbox:
a shared mailbox, or any user's for an app with application permissions. Several
sessions can each open a different mailbox with one app registration and one token.
``azure_cloud`` picks Graph's host and the sign-in host of that cloud; ``graph_url``
replaces the host (a proxy, or the test suite's stand-in).

This is not desktop Outlook driven through COM: it runs headless on every OS, needs
no Outlook installed, and reads meeting messages as emails.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from postroom.auth.base import AuthMode
from postroom.auth.oauth.endpoints import MICROSOFT_CLOUDS, MicrosoftService, register_microsoft_service
from postroom.config.base import Setting
from postroom.config.email_server import COMMON_SETTINGS, check_https_settings, warn_unverified
from postroom.errors import ConfigError
from postroom.validation import check_choice

__all__ = ["GRAPH_OAUTH", "OUTLOOK_SETTINGS", "GraphCloud", "Outlook"]

GraphCloud = Literal["global", "gcc-high", "dod", "china"]

#: Delegated Graph permissions: read and change mail, send it, in the user's own mailbox and in those shared
#: with the user (the ``.Shared`` variants); app-only access takes the app's granted roles (``/.default``).
_DELEGATED = ("Mail.ReadWrite", "Mail.Send", "Mail.ReadWrite.Shared", "Mail.Send.Shared")
GRAPH_OAUTH = register_microsoft_service(
    MicrosoftService(
        "graph",
        delegated=lambda cloud: tuple(f"{cloud.graph_resource}/{name}" for name in _DELEGATED),
        app=lambda cloud: (f"{cloud.graph_resource}/.default",),
        names_user=False,
    )
)


@dataclass(frozen=True, kw_only=True)
class Outlook:
    """A Microsoft 365 mailbox reached through Microsoft Graph (``/me`` or ``/users/{address}``)."""

    auth: AuthMode
    mailbox: str = "me"
    azure_cloud: GraphCloud = "global"
    #: Graph's base URL instead of the cloud's (``https://graph.microsoft.com``), e.g. a proxy in front of it.
    graph_url: str | None = None
    verify_certificate: bool = True
    ca_file: Path | str | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 120.0
    #: How long to keep retrying while Graph throttles (``429``, ``503``, ``ApplicationThrottled``); 0 fails at once.
    max_throttle_wait: float = 300.0
    protocol: Literal["outlook"] = field(default="outlook", init=False)

    def __post_init__(self) -> None:
        check_choice("azure_cloud", self.azure_cloud, GraphCloud)
        mailbox = str(self.mailbox).strip() if isinstance(self.mailbox, str) else ""
        if mailbox.lower() == "me":
            mailbox = "me"
        elif "@" not in mailbox or any(ch in mailbox for ch in "/\\?#% \r\n\t"):
            raise ConfigError(
                "mailbox",
                f"{self.mailbox!r} is neither 'me' nor an email address",
                hint="give 'me' (the signed-in user) or a mailbox address such as 'invoices@contoso.com'",
            )
        object.__setattr__(self, "mailbox", mailbox)
        if self.graph_url is not None:
            parts = urlsplit(str(self.graph_url).strip())
            if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
                raise ConfigError(
                    "graph_url", f"{self.graph_url!r} is not an https base URL", hint="e.g. https://graph.microsoft.us"
                )
            object.__setattr__(self, "graph_url", parts._replace(netloc=parts.netloc.lower()).geturl().rstrip("/"))
        check_https_settings(self)
        if not hasattr(self.auth, "resolve") or not hasattr(self.auth, "kind"):
            raise ConfigError(
                "auth", f"expected an OAuth2 mode such as OAuth2PKCE(...), got {type(self.auth).__name__}"
            )
        bind = getattr(self.auth, "for_server", None)
        if bind is None:
            raise ConfigError(
                "auth",
                f"Microsoft Graph takes OAuth2 tokens only, not {self.auth.kind}",
                hint="use OAuth2PKCE(...) for a user, or OAuth2ClientCredentials(...) for an app",
            )
        object.__setattr__(self, "auth", bind("microsoft365", self.azure_cloud, service=GRAPH_OAUTH.name))
        if self.auth.kind == "oauth2-client-credentials" and self.mailbox == "me":
            raise ConfigError(
                "mailbox",
                "an app signed in with client credentials has no mailbox of its own ('me')",
                hint="give the address of the mailbox it opens, e.g. mailbox='invoices@contoso.com'",
            )
        if not self.verify_certificate:
            warn_unverified(self.server_host)

    @property
    def base_url(self) -> str:
        """Graph's root: the given ``graph_url``, else the cloud's host."""
        return self.graph_url or MICROSOFT_CLOUDS[self.azure_cloud].graph_resource

    @property
    def server_host(self) -> str | None:
        return urlsplit(self.base_url).hostname

    @property
    def mailbox_path(self) -> str:
        """The path every request for this mailbox starts with: ``/me`` or ``/users/{address}``."""
        return "/me" if self.mailbox == "me" else f"/users/{quote(self.mailbox, safe='@')}"

    @property
    def address(self) -> str:
        return f"{self.base_url}/v1.0{self.mailbox_path}"

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def clone(self, **changes: Any) -> Outlook:
        """A copy with ``changes`` applied and validated again."""
        return Outlook(**{**self.given(), **changes})


#: What ``postroom connect --protocol outlook`` offers.
OUTLOOK_SETTINGS = (
    Setting("mailbox", "Outlook: 'me' or the address of a shared (or, app-only, any) mailbox."),
    Setting("azure_cloud", "Microsoft 365 cloud (default global).", choices=("global", "gcc-high", "dod", "china")),
    Setting("graph_url", "Outlook: Graph's base URL (default: the cloud's, https://graph.microsoft.com)."),
    Setting("max_throttle_wait", "EWS/Outlook: seconds to wait out throttling (0: fail at once).", type=float),
    *COMMON_SETTINGS,
)
