"""OAuth2 for IMAP, POP3, SMTP and EWS: modes, providers, tokens, the browser sign-in."""

from postroom.auth.oauth.endpoints import OAuthEndpoints, endpoints_for
from postroom.auth.oauth.loopback import DEFAULT_REDIRECT_URI
from postroom.auth.oauth.modes import (
    ImplicitGrantWarning,
    OAuth2ClientCredentials,
    OAuth2Implicit,
    OAuth2PKCE,
    OAuth2ROPC,
    RopcWarning,
)
from postroom.auth.oauth.tokens import TokenRecord, TokenStore, VaultTokenStore

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "ImplicitGrantWarning",
    "OAuth2ClientCredentials",
    "OAuth2Implicit",
    "OAuth2PKCE",
    "OAuth2ROPC",
    "OAuthEndpoints",
    "RopcWarning",
    "TokenRecord",
    "TokenStore",
    "VaultTokenStore",
    "endpoints_for",
]
