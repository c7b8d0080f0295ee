"""Where an OAuth2 flow goes: authorization server URLs and scopes per provider and cloud.

Data and one function. Microsoft values follow "Authenticate an IMAP, POP or SMTP
connection using OAuth" (learn.microsoft.com) and MSAL's national-cloud table;
US GCC High hosts (``login.microsoftonline.us``, ``outlook.office365.us``) come
from Microsoft's GCC High endpoint lists. Google's from its OAuth2 for native apps
and XOAUTH2 pages. A ``custom`` provider gives its own URLs and scopes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from postroom.errors import ConfigError

__all__ = [
    "MICROSOFT_CLOUDS",
    "MICROSOFT_SERVICES",
    "ClientAuth",
    "MicrosoftCloud",
    "MicrosoftService",
    "OAuthEndpoints",
    "OAuthProvider",
    "endpoints_for",
    "register_microsoft_service",
]

OAuthProvider = Literal["microsoft365", "gmail", "custom"]
#: How a confidential client proves itself at the token endpoint: HTTP Basic, or the secret in the body.
ClientAuth = Literal["basic", "body"]


@dataclass(frozen=True)
class MicrosoftCloud:
    """One Azure cloud: where its users sign in and where its mailboxes live."""

    login_host: str
    #: Resource host of delegated IMAP/POP/SMTP scopes (``<host>/IMAP.AccessAsUser.All``).
    delegated_resource: str
    #: Resource host of the app-only scope (``<host>/.default``).
    app_resource: str
    #: Microsoft Graph's host in this cloud (``https://graph.microsoft.com``).
    graph_resource: str


#: The Azure clouds (Microsoft's "national cloud deployments" table for Graph; the Exchange hosts of the
#: GCC High, DoD and 21Vianet endpoint lists). IMAP, POP and EWS are offered on ``global`` and ``gcc-high``.
MICROSOFT_CLOUDS: dict[str, MicrosoftCloud] = {
    "global": MicrosoftCloud(
        "login.microsoftonline.com",
        "https://outlook.office.com",
        "https://outlook.office365.com",
        "https://graph.microsoft.com",
    ),
    "gcc-high": MicrosoftCloud(
        "login.microsoftonline.us",
        "https://outlook.office365.us",
        "https://outlook.office365.us",
        "https://graph.microsoft.us",
    ),
    "dod": MicrosoftCloud(
        "login.microsoftonline.us",
        "https://outlook.office365.us",
        "https://outlook.office365.us",
        "https://dod-graph.microsoft.us",
    ),
    "china": MicrosoftCloud(
        "login.chinacloudapi.cn",
        "https://partner.outlook.cn",
        "https://partner.outlook.cn",
        "https://microsoftgraph.chinacloudapi.cn",
    ),
}

_MICROSOFT_DELEGATED = ("IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send")


@dataclass(frozen=True)
class MicrosoftService:
    """What a Microsoft 365 token is for (``mail``: IMAP, POP and SMTP; a backend adds its own, e.g. ``ews``):
    the delegated scopes of a user's sign-in and the app-only scopes, per Azure cloud."""

    name: str
    delegated: Callable[[MicrosoftCloud], tuple[str, ...]]
    app: Callable[[MicrosoftCloud], tuple[str, ...]]
    #: Whether the login names a user on the wire (the SASL user of IMAP, POP and SMTP; EWS's mailbox).
    #: Graph's does not: the mailbox is in each request's URL, and an app-only token has no user at all.
    names_user: bool = True


#: service name → its scopes. The mail protocols' are here; a backend registers its own (config/ews.py).
MICROSOFT_SERVICES: dict[str, MicrosoftService] = {}


def register_microsoft_service(service: MicrosoftService) -> MicrosoftService:
    """Make ``service`` a value of the OAuth2 modes' ``service`` (set by the server config they log in to)."""
    MICROSOFT_SERVICES[service.name] = service
    return service


register_microsoft_service(
    MicrosoftService(
        "mail",
        delegated=lambda cloud: tuple(f"{cloud.delegated_resource}/{name}" for name in _MICROSOFT_DELEGATED),
        app=lambda cloud: (f"{cloud.app_resource}/.default",),
    )
)

GOOGLE_AUTHORIZE_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105 - a URL, not a password
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True)
class OAuthEndpoints:
    """Everything a flow needs to know about the authorization server, resolved for one connection."""

    provider: OAuthProvider
    authorize_url: str
    token_url: str
    #: Scopes for a user's sign-in (authorization code) and for app-only access (client credentials).
    delegated_scopes: tuple[str, ...]
    app_scopes: tuple[str, ...]
    #: MSAL authority (``https://<login host>/<tenant>``); Microsoft only.
    authority: str | None = None
    #: Extra query parameters of the authorization request (Google: offline access).
    authorize_params: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        """URLs and scopes, for reports and ``auth status`` (nothing secret in here)."""
        return {
            "provider": self.provider,
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "scopes": " ".join(self.delegated_scopes),
            "app_scopes": " ".join(self.app_scopes),
        }


def endpoints_for(
    provider: OAuthProvider,
    *,
    tenant_id: str | None = None,
    azure_cloud: str = "global",
    authority: str | None = None,
    authorize_url: str | None = None,
    token_url: str | None = None,
    scopes: tuple[str, ...] = (),
    service: str = "mail",
) -> OAuthEndpoints:
    """The endpoints of ``provider``. ``scopes`` replace the provider's defaults when given.

    ``authority`` overrides Microsoft's login host and tenant path (an ADFS or a
    test authority); the tenant id is then taken as part of it.
    """
    if provider == "microsoft365":
        cloud = MICROSOFT_CLOUDS.get(azure_cloud)
        if cloud is None:
            raise ConfigError(
                "azure_cloud", f"unknown Azure cloud {azure_cloud!r}", hint=f"use one of {', '.join(MICROSOFT_CLOUDS)}"
            )
        if authority is None:
            if not tenant_id:
                raise ConfigError(
                    "tenant_id",
                    "is required for Microsoft 365",
                    hint="give the directory (tenant) ID from the app registration's Overview page in Entra ID",
                )
            authority = f"https://{cloud.login_host}/{tenant_id}"
        authority = authority.rstrip("/")
        found = MICROSOFT_SERVICES.get(service)
        if found is None:
            raise ConfigError("service", f"no Microsoft 365 scopes are known for {service!r}")
        return OAuthEndpoints(
            provider="microsoft365",
            authorize_url=f"{authority}/oauth2/v2.0/authorize",
            token_url=f"{authority}/oauth2/v2.0/token",
            delegated_scopes=scopes or found.delegated(cloud),
            app_scopes=found.app(cloud),
            authority=authority,
        )
    if provider == "gmail":
        return OAuthEndpoints(
            provider="gmail",
            authorize_url=authorize_url or GOOGLE_AUTHORIZE_URL,
            token_url=token_url or GOOGLE_TOKEN_URL,
            # openid email: an ID token saying who signed in (for status and user-mismatch errors)
            delegated_scopes=scopes or (GOOGLE_MAIL_SCOPE, "openid", "email"),
            app_scopes=(),
            # A refresh token comes only with offline access; consent is asked again so one always comes.
            authorize_params={"access_type": "offline", "prompt": "consent"},
        )
    if provider == "custom":
        for name, value in (("authorize_url", authorize_url), ("token_url", token_url)):
            if not value:
                raise ConfigError(name, "is required for a custom OAuth2 provider", hint="give the server's URL")
            if not value.startswith(("https://", "http://localhost", "http://127.0.0.1")):
                raise ConfigError(name, f"{value!r} is not an https URL", hint="OAuth2 needs https except on loopback")
        if not scopes:
            raise ConfigError("scopes", "are required for a custom OAuth2 provider", hint="give the mail scope(s)")
        assert authorize_url is not None and token_url is not None
        return OAuthEndpoints(
            provider="custom",
            authorize_url=authorize_url,
            token_url=token_url,
            delegated_scopes=scopes,
            app_scopes=scopes,
        )
    raise ConfigError("provider", f"unknown OAuth2 provider {provider!r}", hint="use microsoft365, gmail or custom")
