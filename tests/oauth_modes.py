"""OAuth2 modes pointing at the test authorization server, as a user would give them, and the sign-in."""

from __future__ import annotations

from typing import Any

from postroom import Variable
from postroom.auth import OAuth2ClientCredentials, OAuth2Implicit, OAuth2PKCE
from postroom.auth.oauth.modes import BrowserSignIn
from tests.browser import Browser
from tests.servers.oauth import CONFIDENTIAL_SECRET, PUBLIC_CLIENT, AuthorizationServerUnderTest

__all__ = ["client_credentials", "implicit", "pkce", "sign_in", "variables"]


def pkce(server: AuthorizationServerUnderTest, provider: str = "microsoft365", **changes: Any) -> OAuth2PKCE:
    """PKCE settings pointing at the test server, as a user would give them (ids from variables)."""
    options: dict[str, Any] = {
        "provider": provider,
        "client_id": Variable("APP_CLIENT_ID"),
        "username": Variable("MAILBOX_USER"),
        "ca_file": str(server.ca_file),
        "redirect_uri": "http://localhost:0/Callback",  # a free port; the path is what is registered
    }
    if provider == "microsoft365":
        options["authority"] = server.authority
    else:
        options |= {"authorize_url": server.authorize_url, "token_url": server.token_url}
    if provider == "custom":
        options["scopes"] = ("https://mail.google.com/", "openid", "email")
    options.update(changes)
    return OAuth2PKCE(**options)


def implicit(server: AuthorizationServerUnderTest, **changes: Any) -> OAuth2Implicit:
    """Implicit-grant settings pointing at the test server (it warns, as it should)."""
    return OAuth2Implicit(**_microsoft_app(server, redirect_uri="http://localhost:0/Callback") | changes)


def client_credentials(server: AuthorizationServerUnderTest, **changes: Any) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(**_microsoft_app(server, client_secret=Variable("APP_SECRET")) | changes)


def _microsoft_app(server: AuthorizationServerUnderTest, **extra: Any) -> dict[str, Any]:
    """An Entra-style app at the test server, ids from variables, as a user would give them."""
    return {
        "client_id": Variable("APP_CLIENT_ID"),
        "username": Variable("MAILBOX_USER"),
        "authority": server.authority,
        "ca_file": str(server.ca_file),
        **extra,
    }


def variables(user: str, client_id: str = PUBLIC_CLIENT) -> dict[str, str]:
    return {"APP_CLIENT_ID": client_id, "MAILBOX_USER": user, "APP_SECRET": CONFIDENTIAL_SECRET}


def sign_in(server: AuthorizationServerUnderTest, mode: BrowserSignIn, user: str, **browser: Any) -> Browser:
    player = Browser(server, browser.pop("as_user", user), **browser)
    try:
        mode.login(variables=variables(user), open_browser=player, timeout=15)
    finally:
        player.join()
    assert not player.errors, player.errors
    return player
