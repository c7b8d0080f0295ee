"""The contract between an auth mode and the transports.

An auth mode is configuration: it holds references to secrets. When a session
connects, the mode *resolves* into a login — the secrets themselves, ready for
the wire. Transports dispatch on the login's type, so a new mode (OAuth2 with
PKCE, client credentials, ...) is a new login type plus the SASL code that sends
it, with no change for callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from postroom.credentials import ResolveContext, Secret
from postroom.errors import CredentialError

__all__ = ["AuthMode", "Login", "PasswordLogin", "TokenLogin", "TokenSource", "check_wire_safe"]


@dataclass(frozen=True)
class PasswordLogin:
    """A username and password, resolved (the values stay hidden in ``repr``)."""

    username: Secret
    password: Secret


class TokenSource(Protocol):
    """Where an OAuth2 login gets its access token (cached, refreshed when needed)."""

    def access_token(self) -> Secret:
        """A token valid for a while yet: from the vault, else refreshed (or newly requested)."""
        ...

    def renew(self, rejected: Secret) -> Secret:
        """A new token after the server refused ``rejected``: another session's newer one from the
        store, else one the authorization server issues now."""
        ...

    @property
    def renewed_by_server(self) -> bool:
        """Whether the last :meth:`renew` asked the authorization server (False: it took a newer token
        another session had stored, which the mail server may refuse too)."""
        ...

    @property
    def account(self) -> str | None:
        """Who signed in, when the provider said (for error messages)."""
        ...

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes granted with the current token, as the authorization server said (may be empty)."""
        ...


@dataclass(frozen=True)
class TokenLogin:
    """An OAuth2 login: the SASL user (the mailbox address) and a source of access tokens."""

    username: Secret
    tokens: TokenSource


Login = PasswordLogin | TokenLogin


class AuthMode(Protocol):
    """How a connection logs in."""

    #: Short name used in profiles, the CLI and reports, e.g. ``"basic"``.
    kind: str

    def resolve(self, context: ResolveContext) -> Login:
        """Resolve every secret reference; raise :class:`CredentialError` naming the field."""
        ...

    def describe(self) -> dict[str, str]:
        """Field name → reference description; safe to print and to store."""
        ...

    def to_profile(self) -> dict[str, str]:
        """The mode as a profile record (references only); insecure strings raise ConfigError."""
        ...


def check_wire_safe(secret: Secret, field_name: str) -> Secret:
    """Refuse a resolved secret that would break or inject a protocol command."""
    value = secret.reveal()
    if not value:
        raise CredentialError(f"{field_name} is empty", hint="check the vault entry or variable it comes from")
    if any(ch in value for ch in "\r\n\0"):
        raise CredentialError(
            f"{field_name} contains a line break or NUL character",
            hint="store it again without the trailing newline",
        )
    return secret
