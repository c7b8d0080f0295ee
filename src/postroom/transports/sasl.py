"""SASL for OAuth2 logins: XOAUTH2 (Google/Microsoft) and OAUTHBEARER (RFC 7628), one exchange for all protocols.

A failed OAuth login is a challenge first: the server sends base64 JSON
(``{"status": "401", ...}`` or ``{"status": "invalid_token", ...}``), the client
answers an empty response (XOAUTH2) or ``%x01`` (OAUTHBEARER), and only then comes
the ``NO`` / ``-ERR`` / ``535``. :class:`OAuthExchange` plays the client side for
IMAP, POP3 and SMTP alike, keeps that JSON, and turns the failure into an
:class:`AuthenticationError` that says whether the token was rejected (renewing it
may help) or the scope or user is wrong (it will not).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable

from postroom.auth.base import TokenLogin
from postroom.credentials import Secret
from postroom.errors import AuthenticationError

__all__ = ["OAuthExchange", "choose_mechanism", "oauth_login"]

_PREFERENCE = ("OAUTHBEARER", "XOAUTH2")


def choose_mechanism(offered: Iterable[str], protocol: str) -> str:
    """OAUTHBEARER when offered (the standard), else XOAUTH2; an error when neither is."""
    names = {m.upper() for m in offered}
    for mechanism in _PREFERENCE:
        if mechanism in names:
            return mechanism
    return_hint = {
        "imap": "the server's CAPABILITY lists no AUTH=XOAUTH2 or AUTH=OAUTHBEARER",
        "pop3": "the server's CAPA SASL line lists neither XOAUTH2 nor OAUTHBEARER",
        "smtp": "the server's EHLO AUTH line lists neither XOAUTH2 nor OAUTHBEARER",
    }[protocol]
    raise AuthenticationError(
        f"the server does not accept OAuth2 logins ({return_hint})",
        hint="check the host (Microsoft 365: outlook.office365.com, Gmail: imap.gmail.com) or use Basic auth",
    )


class OAuthExchange:
    """One SASL OAuth exchange: the client's messages in order, and what the server said on failure."""

    def __init__(
        self, mechanism: str, login: TokenLogin, token: Secret, *, host: str, port: int, renewed: bool = False
    ) -> None:
        self.mechanism = mechanism
        #: True on the second attempt, with a token renewed after the first was refused.
        self.renewed = renewed
        self.user = login.username.reveal()
        self.account = login.tokens.account
        self.token = token
        self._host = host
        self._port = port
        self._calls = 0
        #: The server's error JSON, when it sent one.
        self.error_status: dict[str, str] = {}

    def initial(self) -> bytes:
        """The client's first message (the credentials)."""
        token = self.token.reveal()
        if self.mechanism == "XOAUTH2":
            return f"user={self.user}\x01auth=Bearer {token}\x01\x01".encode()
        authzid = self.user.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={authzid},\x01host={self._host}\x01port={self._port}\x01auth=Bearer {token}\x01\x01".encode()

    def respond(self, challenge: bytes) -> bytes:
        """Answer a server challenge (already base64-decoded): the credentials first, then the error ack."""
        self._calls += 1
        if self._calls == 1:
            return self.initial()
        self.record_error(challenge)
        return self.error_ack()

    def record_error(self, challenge: bytes) -> None:
        """Keep the JSON of the server's error challenge (raw bytes or still base64)."""
        text = challenge.strip()
        try:
            data = json.loads(text)
        except ValueError:
            try:
                data = json.loads(base64.b64decode(text, validate=True))
            except (ValueError, binascii.Error):
                return
        if isinstance(data, dict):
            self.error_status = {str(k): str(v) for k, v in data.items()}

    def error_ack(self) -> bytes:
        """The line that acknowledges an error challenge (before base64)."""
        return b"" if self.mechanism == "XOAUTH2" else b"\x01"

    def failure(self, reply: str) -> AuthenticationError:
        """The error for a refused OAuth login, from the JSON status and the final reply."""
        status = self.error_status.get("status", "")
        scope = self.error_status.get("scope")
        seen = (
            f" (server status {status!r}{f', scope {scope!r}' if scope else ''}; reply: {reply})"
            if status
            else (f" ({reply})")
        )
        if status in {"400", "403", "insufficient_scope"}:
            return AuthenticationError(
                f"the access token lacks the permission (scope) the server needs{seen}",
                hint="add the mail scope to the app registration's API permissions and sign in again "
                "(Microsoft: IMAP.AccessAsUser.All / POP.AccessAsUser.All / SMTP.Send; Gmail: https://mail.google.com/)",
                sasl_status=status,
            )
        if self.account and self.account.lower() != self.user.lower():
            return AuthenticationError(
                f"the server refused the token for {self.user}; the token belongs to {self.account}{seen}",
                hint=f"sign in as {self.user}, or give {self.account} full access to that mailbox (shared mailbox)",
                token_rejected=not self.renewed,
                sasl_status=status or None,
            )
        if self.renewed:
            return AuthenticationError(
                f"the server refused a freshly issued token for {self.user}{seen}",
                hint="check that the signed-in account is this mailbox (or has full access to it), that IMAP/POP/SMTP "
                "AUTH is enabled for the mailbox, and, for app-only access, the service principal and its permissions",
                sasl_status=status or None,
            )
        return AuthenticationError(
            f"the server refused the access token for {self.user}{seen}",
            hint="postroom renews the token and tries once more",
            token_rejected=True,
            sasl_status=status or None,
        )


def oauth_login(
    login: TokenLogin, mechanism: str, attempt: Callable[[OAuthExchange], None], *, host: str, port: int
) -> None:
    """Log in with ``attempt`` (which raises ``exchange.failure(...)`` when refused); when the server
    rejects the token, renew it and try again on the same connection, until a token the authorization
    server issued just now has been tried (a newer one another session stored may be refused too)."""
    token = login.tokens.access_token()
    for _try in range(3):  # the first token; at most one from the store; then the server's
        try:
            attempt(OAuthExchange(mechanism, login, token, host=host, port=port))
            return
        except AuthenticationError as refused:
            if not refused.token_rejected:
                raise
        token = login.tokens.renew(token)
        if login.tokens.renewed_by_server:
            break
    attempt(OAuthExchange(mechanism, login, token, host=host, port=port, renewed=True))
