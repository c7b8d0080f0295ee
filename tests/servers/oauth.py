"""A real OAuth2 authorization server for the tests, built on Authlib's Flask integration.

It lays out its URLs like Entra ID (``/<tenant>/oauth2/v2.0/authorize|token`` and
``/<tenant>/v2.0/.well-known/openid-configuration``) so that MSAL runs against it
unchanged, and serves them over HTTPS with a CA made for the run. It implements:

- authorization code with PKCE (S256 required) behind an HTML login form, with an
  ID token carrying the nonce and ``preferred_username``;
- refresh tokens, rotated on every use (the old one then fails with ``invalid_grant``);
- client credentials for a confidential app, whose tokens open the mailboxes it was
  granted (like an Exchange service principal with FullAccess);
- the resource owner password grant (ROPC) and the implicit grant (``response_type=token``,
  the token in the redirect's URL fragment), both legacy, for the public app;
- RFC 7662 introspection (client-authenticated) on a plain-HTTP back channel, which
  Dovecot's ``oauth2`` passdb and the test SMTP server use to validate tokens.

A token is good for mail only if it carries a mail scope (the resource server's
rule, as Exchange and Gmail have). Test hooks (revoke, lifetimes) act on its store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, request
from werkzeug.serving import make_server

from postroom.sandbox.certs import CertificateSet, make_certificates
from tests.servers.dovecot import free_port

__all__ = [
    "CONFIDENTIAL_CLIENT",
    "CONFIDENTIAL_SECRET",
    "INTROSPECTION_CLIENT",
    "INTROSPECTION_SECRET",
    "MAIL_SCOPES",
    "PUBLIC_CLIENT",
    "SERVER_CLIENT",
    "SERVER_SECRET",
    "TENANT",
    "USER_PASSWORD",
    "AuthorizationServerUnderTest",
    "oauth_server",
]

TENANT = "5f1c2b7e-0000-4000-8000-postroomtest"
PUBLIC_CLIENT = "postroom-desktop-app"
CONFIDENTIAL_CLIENT = "postroom-daemon-app"
CONFIDENTIAL_SECRET = "daemon-Secret-0123456789"
#: A confidential app this server lets authenticate only by HTTP Basic (RFC 6749 §2.3.1's must-have).
BASIC_ONLY_CLIENT = "strict-basic-app"
#: Dovecot's client at the introspection endpoint: Dovecot cannot check scopes, so tokens without a mail
#: scope are reported inactive to it.
INTROSPECTION_CLIENT = "dovecot"
INTROSPECTION_SECRET = "introspect-Secret-0123"
#: The SMTP server's client: it gets the scope and checks it itself (and can then say "insufficient scope").
SMTP_INTROSPECTION_CLIENT = "smtp-server"
SMTP_INTROSPECTION_SECRET = "smtp-introspect-Secret-0123"
#: postroom server's confidential app: its secret is a canary that must never show on any of the server's surfaces.
SERVER_CLIENT = "postroom-server-app"
SERVER_SECRET = "canary-ClientSecret-5b9e2c7d41f0a3"
#: Every ``…@example.test`` user signs in with this password in the login form.
USER_PASSWORD = "browser-Pa55word"
MAIL_SCOPES = frozenset(
    {
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/POP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "https://outlook.office365.com/.default",
        "https://mail.google.com/",
    }
)
# loopback redirect URIs: any port, these exact paths (RFC 8252 §7.3): a desktop app's, and postroom server's callback
_REGISTERED_PATHS = ("/Callback", "/oauth/callback")


@dataclass
class _Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    secret: str | None
    grant_types: tuple[str, ...]
    #: How the client may authenticate at the token endpoint (a strict server allows only Basic).
    auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return "http://localhost/Callback"

    def get_allowed_scope(self, scope: str) -> str:
        return scope  # any scope may be asked for; resource servers decide what a token is good for

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        parts = urlsplit(redirect_uri)
        return (
            parts.scheme == "http" and parts.hostname in {"localhost", "127.0.0.1"} and parts.path in _REGISTERED_PATHS
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and hmac.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.secret is None:
            return method == "none"
        return method in self.auth_methods

    def check_response_type(self, response_type: str) -> bool:
        grant = {"code": "authorization_code", "token": "implicit"}.get(response_type)
        return grant is not None and grant in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class _Code(AuthorizationCodeMixin):  # type: ignore[misc]
    code: str
    client_id: str
    user: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class _Token(TokenMixin):  # type: ignore[misc]
    access_token: str
    refresh_token: str | None
    client_id: str
    user: str
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: _Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def good_for_mail(self) -> bool:
        return bool(MAIL_SCOPES & set(self.scope.split()))


@dataclass
class AuthorizationServerUnderTest:
    """The running server: its URLs, and hooks for the tests."""

    base_url: str
    backchannel_url: str
    ca_file: Path
    tokens: dict[str, _Token] = field(default_factory=dict)
    refresh_tokens: dict[str, _Token] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    #: Mailboxes each confidential app may open (client credentials).
    app_mailboxes: dict[str, str] = field(default_factory=dict)
    #: Lifetime (seconds) of the next access tokens issued.
    lifetime: int = 3600
    #: Token requests seen, by grant type.
    requests: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{TENANT}"

    @property
    def authorize_url(self) -> str:
        return f"{self.authority}/oauth2/v2.0/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    def introspection_url(self, *, with_credentials: bool = True) -> str:
        creds = f"{INTROSPECTION_CLIENT}:{INTROSPECTION_SECRET}@" if with_credentials else ""
        return self.backchannel_url.replace("http://", f"http://{creds}") + "/introspect"

    def revoke_access_tokens(self, user: str) -> int:
        """Revoke every live access token of ``user`` (what an admin or a password change does)."""
        with self.lock:
            found = [t for t in self.tokens.values() if t.user == user and not t.revoked]
            for token in found:
                token.revoked = True
        return len(found)

    def revoke_refresh_tokens(self, user: str) -> int:
        with self.lock:
            found = [t for t in self.refresh_tokens.values() if t.user == user and not t.refresh_revoked]
            for token in found:
                token.refresh_revoked = True
        return len(found)

    def count(self, grant_type: str) -> int:
        with self.lock:
            return self.requests.get(grant_type, 0)

    def introspect(self, access_token: str) -> dict[str, Any]:
        """Ask the introspection endpoint over HTTP, as the SMTP server (RFC 7662, client_secret_basic)."""
        import urllib.request
        from urllib.parse import urlencode

        req = urllib.request.Request(  # noqa: S310 - a loopback http URL of this test server
            self.backchannel_url + "/introspect", data=urlencode({"token": access_token}).encode(), method="POST"
        )
        basic = base64.b64encode(f"{SMTP_INTROSPECTION_CLIENT}:{SMTP_INTROSPECTION_SECRET}".encode()).decode()
        req.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(req, timeout=10) as reply:  # noqa: S310
            answer: dict[str, Any] = json.loads(reply.read())
        answer["mail"] = bool(MAIL_SCOPES & set(str(answer.get("scope", "")).split()))
        return answer


def _jwt(claims: dict[str, Any], key: bytes) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


_LOGIN_PAGE = """<!doctype html><html><body><h1>Sign in to the test tenant</h1>
<form method="post" action="{action}">
<label>Email <input name="username" value="{hint}"></label>
<label>Password <input name="password" type="password"></label>
<button name="decision" value="accept">Sign in</button>
<button name="decision" value="deny">Cancel</button>
</form>{message}</body></html>"""


def _build_app(state: AuthorizationServerUnderTest, issuer: str) -> Flask:
    app = Flask("postroom-test-oauth")
    clients = {
        PUBLIC_CLIENT: _Client(PUBLIC_CLIENT, None, ("authorization_code", "refresh_token", "password", "implicit")),
        CONFIDENTIAL_CLIENT: _Client(
            CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, ("authorization_code", "refresh_token", "client_credentials")
        ),
        SERVER_CLIENT: _Client(SERVER_CLIENT, SERVER_SECRET, ("authorization_code", "refresh_token")),
        BASIC_ONLY_CLIENT: _Client(
            BASIC_ONLY_CLIENT, CONFIDENTIAL_SECRET, ("client_credentials",), auth_methods=("client_secret_basic",)
        ),
        INTROSPECTION_CLIENT: _Client(INTROSPECTION_CLIENT, INTROSPECTION_SECRET, ()),
        SMTP_INTROSPECTION_CLIENT: _Client(SMTP_INTROSPECTION_CLIENT, SMTP_INTROSPECTION_SECRET, ()),
    }
    signing_key = secrets.token_bytes(32)

    def save_token(token: dict[str, Any], req: Any) -> None:
        user = req.user or state.app_mailboxes.get(req.client.client_id, "")
        row = _Token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=req.client.client_id,
            user=user,
            scope=token.get("scope", ""),
            issued_at=time.time(),
            expires_in=int(token["expires_in"]),
        )
        with state.lock:
            state.tokens[row.access_token] = row
            if row.refresh_token:
                state.refresh_tokens[row.refresh_token] = row

    server = AuthorizationServer(app, query_client=clients.get, save_token=save_token)
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            # ~1.6 KB, like Entra's tokens: longer than POP3's 255-octet command line and SMTP's 512
            access_token_generator=lambda **_: "at-" + secrets.token_urlsafe(1200),
            refresh_token_generator=lambda **_: "rt-" + secrets.token_urlsafe(48),
            expires_generator=lambda client, grant_type: state.lifetime,
        ),
    )

    class AuthCode(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]  # noqa: RUF012

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            state.codes[code] = _Code(
                code=code,
                client_id=req.client.client_id,
                user=req.user,
                redirect_uri=req.payload.redirect_uri,
                scope=req.scope,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                nonce=data.get("nonce"),
            )

        def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
            found = state.codes.get(code)
            return found if found is not None and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code: _Code) -> None:
            state.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code: _Code) -> str:
            return authorization_code.user

        def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
            code: _Code = self.request.authorization_code
            status, body, headers = super().create_token_response()
            if "openid" in code.scope.split():
                now = int(time.time())
                claims = {
                    "iss": issuer,
                    "sub": hashlib.sha256(code.user.encode()).hexdigest()[:16],
                    "aud": code.client_id,
                }
                claims |= {"iat": now, "exp": now + 3600, "preferred_username": code.user, "email": code.user}  # type: ignore[dict-item]
                if code.nonce:
                    claims["nonce"] = code.nonce
                body["id_token"] = _jwt(claims, signing_key)
            return status, body, headers

    class Refresh(grants.RefreshTokenGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]  # noqa: RUF012
        INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

        def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:
            with state.lock:
                row = state.refresh_tokens.get(refresh_token)
            return row if row is not None and not row.refresh_revoked else None

        def authenticate_user(self, credential: _Token) -> str:
            return credential.user

        def revoke_old_credential(self, credential: _Token) -> None:
            credential.refresh_revoked = True

    class Password(grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
        """ROPC, for the legacy EWS set-ups that still use it (public clients, as Entra allows when enabled)."""

        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

        def authenticate_user(self, username: str, password: str) -> str | None:
            ok = username.endswith("@example.test") and hmac.compare_digest(password, USER_PASSWORD)
            return username if ok else None

    class ClientCredentials(grants.ClientCredentialsGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

    class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
        CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

        def query_token(self, token_string: str, token_type_hint: str | None) -> _Token | None:
            with state.lock:
                return state.tokens.get(token_string)

        def introspect_token(self, token: _Token) -> dict[str, Any]:
            asker = request.authorization.username if request.authorization else None
            if asker == INTROSPECTION_CLIENT and not token.good_for_mail():
                return {"active": False}
            return {
                "active": True,
                "username": token.user,
                "scope": token.scope,
                "client_id": token.client_id,
                "exp": int(token.issued_at + token.expires_in),
                "token_type": "Bearer",
            }

        def check_permission(self, token: _Token, client: _Client, req: Any) -> bool:
            return client.client_id in {INTROSPECTION_CLIENT, SMTP_INTROSPECTION_CLIENT}

    server.register_grant(AuthCode, [CodeChallenge(required=True)])
    server.register_grant(Refresh)
    server.register_grant(ClientCredentials)
    server.register_grant(Password)
    server.register_grant(grants.ImplicitGrant)
    server.register_endpoint(Introspection)

    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def discovery(tenant: str) -> Any:
        if tenant != TENANT:
            return {"error": "invalid_tenant", "error_description": f"AADSTS90002: Tenant '{tenant}' not found."}, 400
        root = f"{request.url_root.rstrip('/')}/{tenant}"
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "response_types_supported": ["code", "token"],
            "code_challenge_methods_supported": ["S256"],
        }

    @app.route("/<tenant>/oauth2/v2.0/authorize", methods=["GET", "POST"])
    def authorize(tenant: str) -> Any:
        if request.method == "GET":
            try:
                server.get_consent_grant(end_user=None)
            except Exception as exc:  # an invalid request: show it, as a real server would
                return f"invalid authorization request: {html.escape(str(exc))}", 400
            return _LOGIN_PAGE.format(
                action=html.escape(request.full_path),  # the form posts back with the original query
                hint=html.escape(request.args.get("login_hint", "")),
                message="",
            )
        if request.form.get("decision") == "deny":
            denied = server.create_authorization_response(
                grant_user=None, grant=server.get_consent_grant(end_user=None)
            )
            return _deliver(denied)
        user = request.form.get("username", "")
        if not (user.endswith("@example.test") and request.form.get("password") == USER_PASSWORD):
            return "wrong user name or password", 401
        grant = server.get_consent_grant(end_user=user)
        return _deliver(server.create_authorization_response(grant=grant, grant_user=user))

    def _deliver(response: Any) -> Any:
        """``response_mode=form_post``: hand the code back in an auto-submitting form instead of the URL."""
        location = response.headers.get("Location")
        if request.args.get("response_mode") != "form_post" or not location:
            return response
        target = urlsplit(location)
        from urllib.parse import parse_qsl

        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in parse_qsl(target.query)
        )
        action = html.escape(target._replace(query="").geturl())
        return f'<html><body onload="document.forms[0].submit()"><form method="post" action="{action}">{fields}</form></body></html>'

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str) -> Any:
        grant_type = request.form.get("grant_type", "")
        with state.lock:
            state.requests[grant_type] = state.requests.get(grant_type, 0) + 1
        return server.create_token_response()

    @app.post("/introspect")
    def introspect() -> Any:
        return server.create_endpoint_response("introspection")

    return app


@contextmanager
def oauth_server(folder: Path) -> Iterator[AuthorizationServerUnderTest]:
    """Start the server: HTTPS for clients (MSAL needs https), plain HTTP on loopback for introspection."""
    import os

    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # the HTTP back channel only
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    certs: CertificateSet = make_certificates(folder / "tls", ("localhost",))
    https_port, http_port = free_port(), free_port()
    base = f"https://localhost:{https_port}"
    state = AuthorizationServerUnderTest(base, f"http://127.0.0.1:{http_port}", Path(certs.ca_file))
    app = _build_app(state, issuer=f"{base}/{TENANT}/v2.0")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    servers = [
        make_server("127.0.0.1", https_port, app, threaded=True, ssl_context=context),
        make_server("127.0.0.1", http_port, app, threaded=True),
    ]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield state
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()
