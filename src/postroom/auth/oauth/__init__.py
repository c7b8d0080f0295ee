"""OAuth2 for IMAP, POP3 and SMTP: modes, providers, tokens, the browser sign-in."""

from postroom.auth.oauth.endpoints import OAuthEndpoints, endpoints_for
from postroom.auth.oauth.loopback import DEFAULT_REDIRECT_URI
from postroom.auth.oauth.modes import OAuth2ClientCredentials, OAuth2PKCE, OAuth2ROPC, RopcWarning
from postroom.auth.oauth.tokens import TokenRecord, TokenStore

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "OAuth2ClientCredentials",
    "OAuth2PKCE",
    "OAuth2ROPC",
    "OAuthEndpoints",
    "RopcWarning",
    "TokenRecord",
    "TokenStore",
    "endpoints_for",
]
