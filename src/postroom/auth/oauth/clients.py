"""Talking to authorization servers: MSAL for Microsoft, Authlib for Google and custom providers.

Both sides expose the same four steps — start an authorization-code request
(PKCE S256, our own ``state``), redeem the code, refresh, and the client-credentials
grant — and return a :class:`TokenResponse`. Every failure becomes an
:class:`~postroom.errors.OAuthError` that names the field to fix; library
exceptions never leave this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from postroom.auth.oauth.endpoints import ClientAuth, OAuthEndpoints
from postroom.auth.oauth.replies import error_detail
from postroom.auth.oauth.tokens import TokenResponse, unverified_claims
from postroom.credentials import Secret, redact
from postroom.errors import ConfigError, ConsentRequiredError, CredentialError, OAuthError, ServerUnreachableError
from postroom.extras import require_extra

__all__ = [
    "AuthlibClient",
    "AuthorizationFlow",
    "AuthorizationRequest",
    "MsalClient",
    "OAuthClient",
    "ResolvedApp",
    "make_client",
]


@dataclass
class AuthorizationRequest:
    """A started authorization-code request: the URL to open and what redeeming it needs."""

    url: str
    state: str
    redirect_uri: str
    #: Backend data (the MSAL flow, or the PKCE verifier); holds secrets, never shown.
    private: dict[str, Any] = field(default_factory=dict, repr=False)


class AuthorizationFlow(Protocol):
    """A browser sign-in: the URL to open, and the tokens from what the redirect carried."""

    endpoints: OAuthEndpoints
    #: The parameter a successful redirect carries (``code``, or ``access_token`` for implicit).
    answer: str
    #: True when the redirect carries it in the URL fragment, which a browser never sends to a server.
    in_fragment: bool

    def begin(self, redirect_uri: str, state: str, login_hint: str | None) -> AuthorizationRequest: ...

    def redeem(self, request: AuthorizationRequest, callback: Mapping[str, str]) -> TokenResponse: ...


class OAuthClient(AuthorizationFlow, Protocol):
    """One app registration at one authorization server."""

    def refresh(self, refresh_token: Secret) -> TokenResponse: ...

    def client_credentials(self) -> TokenResponse: ...

    def password(self, username: Secret, password: Secret) -> TokenResponse: ...


@dataclass(frozen=True)
class ClientSettings:
    """Resolved app settings: ids and secret as :class:`Secret`, plus how to re-consent."""

    client_id: Secret
    client_secret: Secret | None
    #: CA bundle for the authorization server's certificate (None: the system's).
    ca_file: str | None
    #: The command or call that signs in again, for error hints.
    relogin: str
    #: How the client secret is sent to the token endpoint: HTTP Basic or in the body (Authlib clients).
    client_auth: ClientAuth = "basic"


@dataclass(frozen=True)
class ResolvedApp:
    """An OAuth2 mode with its references resolved: what one connect or sign-in needs."""

    endpoints: OAuthEndpoints
    settings: ClientSettings
    #: The username given (the login hint and, without ``mailbox``, the SASL user).
    username: str | None
    #: Hash of the app, tenant, user and grant the stored tokens must belong to.
    fingerprint: str

    def client(self) -> OAuthClient:
        """The authorization-server client for this app."""
        return make_client(self.endpoints, self.settings)


def make_client(endpoints: OAuthEndpoints, settings: ClientSettings) -> OAuthClient:
    """MSAL for Microsoft 365, Authlib for everything else (each from its extra)."""
    if endpoints.provider == "microsoft365":
        require_extra("microsoft", "OAuth2 with Microsoft 365")
        return MsalClient(endpoints, settings)
    require_extra("oauth", f"OAuth2 with {'Gmail' if endpoints.provider == 'gmail' else 'a custom provider'}")
    return AuthlibClient(endpoints, settings)


# -- Microsoft: MSAL --------------------------------------------------------------------------


class MsalClient:
    """Microsoft identity platform through MSAL (public client, or confidential with a secret)."""

    answer = "code"
    in_fragment = False

    def __init__(self, endpoints: OAuthEndpoints, settings: ClientSettings) -> None:
        self.endpoints = endpoints
        self.settings = settings
        self._app: Any = None

    def _application(self) -> Any:
        if self._app is None:
            import msal

            http = _http_session(self.settings.ca_file)
            options: dict[str, Any] = {
                "authority": self.endpoints.authority,
                "http_client": http,
                "token_cache": msal.TokenCache(),  # in memory only: the vault keeps what lasts
            }
            if self.endpoints.authority and not _is_microsoft_login_host(self.endpoints.authority):
                options["instance_discovery"] = False  # an ADFS or other authority given explicitly
                _without_user_realm(http, self.endpoints.authority)
            client_id = self.settings.client_id.reveal()
            with _mapped(self.settings, "tenant discovery", self.endpoints.authority or ""):
                if self.settings.client_secret is not None:
                    self._app = msal.ConfidentialClientApplication(
                        client_id, client_credential=self.settings.client_secret.reveal(), **options
                    )
                else:
                    self._app = msal.PublicClientApplication(client_id, **options)
        return self._app

    def begin(self, redirect_uri: str, state: str, login_hint: str | None) -> AuthorizationRequest:
        with _mapped(self.settings, "authorization request", self.endpoints.authorize_url):
            flow = self._application().initiate_auth_code_flow(
                list(self.endpoints.delegated_scopes),
                redirect_uri=redirect_uri,
                state=state,
                login_hint=login_hint,
                # the code comes back in a POST body, not in the URL and browser history (RFC 9700 §4.3.1)
                response_mode="form_post",
            )
        return AuthorizationRequest(flow["auth_uri"], state, redirect_uri, {"flow": flow})

    def redeem(self, request: AuthorizationRequest, callback: Mapping[str, str]) -> TokenResponse:
        with _mapped(self.settings, "code redemption", self.endpoints.token_url):
            result = self._application().acquire_token_by_auth_code_flow(request.private["flow"], dict(callback))
        return self._response(result, grant="authorization_code")

    def refresh(self, refresh_token: Secret) -> TokenResponse:
        with _mapped(self.settings, "token refresh", self.endpoints.token_url):
            result = self._application().acquire_token_by_refresh_token(
                refresh_token.reveal(), list(self.endpoints.delegated_scopes)
            )
        return self._response(result, grant="refresh_token")

    def client_credentials(self) -> TokenResponse:
        if self.settings.client_secret is None:
            raise ConfigError("client_secret", "is required for the client-credentials grant", hint=_SECRET_HINT)
        with _mapped(self.settings, "client-credentials request", self.endpoints.token_url):
            result = self._application().acquire_token_for_client(list(self.endpoints.app_scopes))
        return self._response(result, grant="client_credentials")

    def password(self, username: Secret, password: Secret) -> TokenResponse:
        """ROPC (legacy): the user's password goes to the authorization server; no MFA possible."""
        application = self._application()
        with _mapped(self.settings, "password grant", self.endpoints.token_url), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # OAuth2ROPC warns once, when it is built
            result = application.acquire_token_by_username_password(
                username.reveal(), password.reveal(), list(self.endpoints.delegated_scopes)
            )
        return self._response(result, grant="password")

    def _response(self, result: Mapping[str, Any], *, grant: str) -> TokenResponse:
        if "error" in result:
            raise _token_error(str(result["error"]), str(result.get("error_description") or ""), grant, self.settings)
        claims = result.get("id_token_claims") or {}
        return _normalised(result, claims)


def _is_microsoft_login_host(authority: str) -> bool:
    host = urlsplit(authority).hostname or ""
    return host in {"login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn"}


# -- Google and custom providers: Authlib ----------------------------------------------------


class AuthlibClient:
    """A standard OAuth2 server (Google, or a custom provider) through Authlib's requests client."""

    answer = "code"
    in_fragment = False

    def __init__(self, endpoints: OAuthEndpoints, settings: ClientSettings) -> None:
        self.endpoints = endpoints
        self.settings = settings

    def _session(self, **options: Any) -> Any:
        from authlib.integrations.requests_client import OAuth2Session

        secret = self.settings.client_secret
        session_class = type("_Session", (_PinnedVerify, OAuth2Session), {})
        session = session_class(
            self.settings.client_id.reveal(),
            secret.reveal() if secret is not None else None,
            token_endpoint_auth_method=(
                "none"
                if secret is None
                else "client_secret_basic"
                if self.settings.client_auth == "basic"
                else "client_secret_post"
            ),
            **options,
        )
        session.ca_file = self.settings.ca_file
        return session

    def begin(self, redirect_uri: str, state: str, login_hint: str | None) -> AuthorizationRequest:
        from authlib.common.security import generate_token

        verifier = generate_token(64)  # RFC 7636: 43-128 characters of [A-Za-z0-9-._~]
        session = self._session(
            scope=" ".join(self.endpoints.delegated_scopes), redirect_uri=redirect_uri, code_challenge_method="S256"
        )
        extra = dict(self.endpoints.authorize_params)
        if login_hint:
            extra["login_hint"] = login_hint
        url, _ = session.create_authorization_url(
            self.endpoints.authorize_url, state=state, code_verifier=verifier, **extra
        )
        return AuthorizationRequest(url, state, redirect_uri, {"code_verifier": verifier})

    def redeem(self, request: AuthorizationRequest, callback: Mapping[str, str]) -> TokenResponse:
        session = self._session(redirect_uri=request.redirect_uri)
        with _mapped(self.settings, "code redemption", self.endpoints.token_url):
            token = session.fetch_token(
                self.endpoints.token_url,
                grant_type="authorization_code",
                code=callback.get("code", ""),
                code_verifier=request.private["code_verifier"],
            )
        return _normalised(token, unverified_claims(str(token.get("id_token") or "")))

    def refresh(self, refresh_token: Secret) -> TokenResponse:
        session = self._session()
        with _mapped(self.settings, "token refresh", self.endpoints.token_url):
            token = session.refresh_token(self.endpoints.token_url, refresh_token=refresh_token.reveal())
        return _normalised(token, unverified_claims(str(token.get("id_token") or "")))

    def client_credentials(self) -> TokenResponse:
        if self.settings.client_secret is None:
            raise ConfigError("client_secret", "is required for the client-credentials grant", hint=_SECRET_HINT)
        session = self._session(scope=" ".join(self.endpoints.app_scopes))
        with _mapped(self.settings, "client-credentials request", self.endpoints.token_url):
            token = session.fetch_token(self.endpoints.token_url, grant_type="client_credentials")
        return _normalised(token, {})

    def password(self, username: Secret, password: Secret) -> TokenResponse:
        session = self._session(scope=" ".join(self.endpoints.delegated_scopes))
        with _mapped(self.settings, "password grant", self.endpoints.token_url):
            token = session.fetch_token(
                self.endpoints.token_url, grant_type="password", username=username.reveal(), password=password.reveal()
            )
        return _normalised(token, unverified_claims(str(token.get("id_token") or "")))


# -- shared ----------------------------------------------------------------------------------

#: Seconds to wait for an authorization server (MSAL and requests wait forever by default).
HTTP_TIMEOUT = 30.0


class _PinnedVerify:
    """A requests session that uses its CA file even when REQUESTS_CA_BUNDLE is set (requests lets the
    environment win over ``session.verify``), and never waits forever."""

    ca_file: str | None = None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.ca_file and "verify" not in kwargs:
            kwargs["verify"] = self.ca_file
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return super().request(method, url, *args, **kwargs)  # type: ignore[misc]


def _without_user_realm(http: Any, authority: str) -> None:
    """MSAL's password grant asks Entra's user-realm endpoint first, on port 443 of the authority's host
    whatever its port; an ADFS or test authority has none. This client's own HTTP session answers that one
    URL with 404, which MSAL reads as "no realm: plain ROPC" (nothing of MSAL is patched)."""
    import requests
    import requests.adapters

    class _NoUserRealm(requests.adapters.BaseAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = requests.Response()
            response.status_code, response.url, response.request = 404, request.url, request
            response._content = b"{}"
            return response

        def close(self) -> None:
            pass

    host = urlsplit(authority).hostname or ""
    http.mount(f"https://{host}/common/userrealm/", _NoUserRealm())


def _http_session(ca_file: str | None) -> Any:
    import requests

    session = type("_Session", (_PinnedVerify, requests.Session), {})()
    session.ca_file = ca_file
    return session


_SECRET_HINT = "give the app's client secret (client_secret=, best a vault reference)"  # noqa: S105


def _normalised(result: Mapping[str, Any], claims: Mapping[str, Any]) -> TokenResponse:
    access = result.get("access_token")
    if not access:
        raise OAuthError("the authorization server answered without an access token", hint="check the provider URLs")
    refresh = result.get("refresh_token")
    scope = result.get("scope") or ""
    scopes = tuple(scope.split() if isinstance(scope, str) else scope)
    return TokenResponse(
        access_token=Secret(str(access)),
        expires_in=float(result.get("expires_in") or 3600),
        refresh_token=Secret(str(refresh)) if refresh else None,
        scopes=scopes,
        id_claims=dict(claims),
    )


#: Entra ID error codes (AADSTSnnnn) → (field to fix, what to do).
_AADSTS: dict[str, tuple[str, str]] = {
    "700016": ("client_id", "the application (client) ID is not registered in this tenant: check it and the tenant"),
    "90002": ("tenant_id", "the tenant was not found: check the directory (tenant) ID"),
    "900023": ("tenant_id", "the tenant id is not a valid GUID or domain"),
    "7000215": ("client_secret", "the client secret is wrong: copy the secret's *value*, not its ID"),
    "7000222": ("client_secret", "the client secret has expired: create a new one in the app registration"),
    "65001": ("consent", "the app lacks consent: an admin must grant consent for its API permissions"),
    "50011": ("redirect_uri", "the redirect URI is not registered: add it to the app registration (exact path)"),
    "500113": ("redirect_uri", "the app registration has no redirect URI: add http://localhost/Callback"),
    "7000218": ("client_secret", "the app is confidential: give its client secret, or allow public client flows"),
}


def _token_error(error: str, description: str, grant: str, settings: ClientSettings) -> OAuthError:
    detail = error_detail(error, description)
    for code, (field_name, advice) in _AADSTS.items():
        if f"AADSTS{code}" in description:
            if field_name in {"client_id", "tenant_id", "client_secret", "redirect_uri"}:
                return OAuthError(f"{field_name}: {advice} ({detail})", hint="fix it and try again", error=error)
            return OAuthError(advice + f" ({detail})", hint="ask your Entra ID admin", error=error)
    if grant == "password" and error in {"invalid_grant", "invalid_request"}:
        return OAuthError(
            f"username / password: the authorization server refused them ({detail})",
            hint=settings.relogin,
            error=error,
        )
    if error == "invalid_grant":
        what = "the refresh token" if grant == "refresh_token" else "the authorization"
        return ConsentRequiredError(
            f"{what} was refused — expired, revoked, or the password changed ({detail})",
            hint=f"sign in again: {settings.relogin}",
            error=error,
        )
    if error in {"invalid_client", "unauthorized_client"}:
        return OAuthError(
            f"client_id / client_secret: the authorization server does not accept this app ({detail})",
            hint="check the client id, the client secret (vault entry or variable) and the tenant",
            error=error,
        )
    if error == "invalid_scope":
        return OAuthError(
            f"scopes: the authorization server refused the requested scopes ({detail})",
            hint="add the mail permissions to the app registration, or fix the scopes",
            error=error,
        )
    return OAuthError(f"the authorization server refused the {grant} request ({detail})", error=error)


class _NoAuthlibError(Exception):
    error: str | None = None
    description: str | None = None


@contextmanager
def _mapped(settings: ClientSettings, step: str, url: str) -> Iterator[None]:
    """Map network and library failures of one token request to postroom errors."""
    import requests

    try:
        from authlib.integrations.base_client import OAuthError as AuthlibError
    except ImportError:  # MSAL alone: no Authlib error can be raised
        AuthlibError = _NoAuthlibError  # noqa: N806

    try:
        yield
    except requests.exceptions.SSLError:
        raise ServerUnreachableError(
            f"{step}: the authorization server's certificate is not trusted ({url})",
            hint="give its CA certificate (ca_file=) or fix the system trust store",
        ) from None
    except requests.RequestException as exc:
        raise ServerUnreachableError(
            f"{step}: cannot reach the authorization server at {url} ({type(exc).__name__})",
            hint="check the network, proxy settings and the provider/tenant settings",
        ) from None
    except AuthlibError as exc:
        raise _token_error(exc.error or "error", exc.description or "", _grant_of(step), settings) from None
    except (OAuthError, ConfigError, CredentialError):
        raise
    except (ValueError, RuntimeError) as exc:
        # MSAL raises ValueError for an unusable authority and for a state/scope mismatch in the callback,
        # RuntimeError for an ID token whose nonce is not the one it sent.
        raise OAuthError(f"{step} failed: {redact(str(exc))[:300]}", hint=_value_error_hint(step)) from None


def _grant_of(step: str) -> str:
    return {"token refresh": "refresh_token", "client-credentials request": "client_credentials"}.get(
        step, "authorization_code"
    )


def _value_error_hint(step: str) -> str:
    if step == "tenant discovery":
        return "check the tenant id and the Azure cloud (global or gcc-high)"
    return "start the sign-in again"
