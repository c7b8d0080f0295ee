"""The OAuth2 implicit grant (RFC 6749 §4.2), legacy: the access token comes back in the redirect.

No library handles it for a native app (MSAL dropped it), so the authorization
request is built here; it is only a URL. The authorization server redirects the
browser to ``redirect_uri#access_token=…&state=…``: the fragment never reaches an
HTTP server, so postroom's loopback listener answers that request with a page
whose script posts the fragment back (see :mod:`postroom.auth.oauth.loopback`).
There is no refresh token: when the access token expires, the user signs in again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from urllib.parse import urlencode

from postroom.auth.oauth.clients import AuthorizationRequest, ClientSettings
from postroom.auth.oauth.endpoints import OAuthEndpoints
from postroom.auth.oauth.tokens import TokenResponse, unverified_claims
from postroom.credentials import Secret
from postroom.errors import OAuthError
from postroom.logs import get_logger

__all__ = ["DEFAULT_LIFETIME", "ImplicitFlow"]

#: Lifetime assumed when the server sends no ``expires_in`` and the token is not a JWT (Entra's default).
DEFAULT_LIFETIME = 3600.0
_log = get_logger("postroom.auth")


class ImplicitFlow:
    """One app's implicit sign-in: the authorization URL, and the token read from the redirect."""

    #: The parameter a successful redirect carries (the loopback listener waits for it).
    answer = "access_token"
    #: The redirect carries it in the URL fragment: the listener serves the page that relays it.
    in_fragment = True

    def __init__(self, endpoints: OAuthEndpoints, settings: ClientSettings) -> None:
        self.endpoints = endpoints
        self.settings = settings

    def begin(self, redirect_uri: str, state: str, login_hint: str | None) -> AuthorizationRequest:
        params = {
            "client_id": self.settings.client_id.reveal(),
            "response_type": "token",
            "redirect_uri": redirect_uri,
            # no offline_access: the implicit grant never returns a refresh token
            "scope": " ".join(s for s in self.endpoints.delegated_scopes if s != "offline_access"),
            "state": state,
            "response_mode": "fragment",
        }
        if login_hint:
            params["login_hint"] = login_hint
        separator = "&" if "?" in self.endpoints.authorize_url else "?"
        return AuthorizationRequest(self.endpoints.authorize_url + separator + urlencode(params), state, redirect_uri)

    def redeem(self, request: AuthorizationRequest, callback: Mapping[str, str]) -> TokenResponse:
        """The token the redirect carried (there is nothing to redeem: no request leaves the machine)."""
        token = callback.get("access_token", "")
        token_type = callback.get("token_type", "")
        if not token:
            raise OAuthError("the sign-in came back without an access token", hint="start the sign-in again")
        if token_type.lower() != "bearer":
            raise OAuthError(
                f"the sign-in returned a token of type {token_type[:40]!r}, not a bearer token",
                hint="check that the app registration allows access tokens for the implicit grant",
            )
        claims = unverified_claims(token)  # only to show who signed in and when it ends; never trusted
        granted = tuple(callback.get("scope", "").split()) or self.endpoints.delegated_scopes
        return TokenResponse(
            access_token=Secret(token),
            expires_in=_lifetime(callback.get("expires_in"), claims),
            scopes=granted,
            id_claims=claims,
        )


def _lifetime(expires_in: str | None, claims: Mapping[str, object]) -> float:
    if expires_in:
        try:
            return max(0.0, float(expires_in))
        except ValueError:
            _log.warning("the sign-in's expires_in %r is not a number", expires_in[:20])
    expiry = claims.get("exp")
    if isinstance(expiry, int | float):
        return max(0.0, float(expiry) - time.time())
    return DEFAULT_LIFETIME
