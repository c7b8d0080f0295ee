"""OAuth2 tokens at rest: one record per connection, encrypted in the credential vault.

A record holds the access token, its expiry, the refresh token (if any), the
granted scopes and who signed in. It lives as one JSON value in the vault
(``vault:<name>/token``), so it is never in clear on disk, and every change goes
through :meth:`CredentialVault.update` under the vault's lock: a rotated refresh
token replaces the old one in one write, and two processes never refresh with
the same (single-use) refresh token at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from postroom.credentials import Secret
from postroom.credentials.vault import CredentialVault
from postroom.redaction import replace as redact_instead

__all__ = [
    "REFRESH_MARGIN",
    "TokenRecord",
    "TokenResponse",
    "TokenStore",
    "TokenStores",
    "VaultTokenStore",
    "expires_soon",
    "fingerprint",
    "replace_in_redactor",
    "unverified_claims",
]

#: Refresh an access token this many seconds before it expires (clock skew, slow logins).
REFRESH_MARGIN = 300.0
_TOKEN_ATTRIBUTE = "token"  # noqa: S105 - a vault attribute name, not a password


def expires_soon(expires_at: float, obtained_at: float, now: float | None = None) -> bool:
    """True when a token obtained at ``obtained_at`` and ending at ``expires_at`` is expired or near it: within
    a tenth of its lifetime, at most :data:`REFRESH_MARGIN` (a 5-minute token, Keycloak's default, is renewed
    30 s early, not at once)."""
    margin = min(REFRESH_MARGIN, max(expires_at - obtained_at, 0.0) / 10)
    return (now or time.time()) >= expires_at - margin


@dataclass(frozen=True)
class TokenResponse:
    """What a token endpoint answered, normalised across MSAL and Authlib."""

    access_token: Secret
    expires_in: float
    refresh_token: Secret | None = None
    scopes: tuple[str, ...] = ()
    id_claims: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenRecord:
    """The tokens of one connection (values hidden in ``repr``)."""

    access_token: Secret
    expires_at: float
    refresh_token: Secret | None
    scopes: tuple[str, ...]
    #: Who signed in (``preferred_username`` / ``email`` of the ID token), when the provider said.
    account: str | None
    #: Which app, tenant and grant the tokens belong to (a hash); tokens of another app are ignored.
    fingerprint: str
    obtained_at: float
    grant: str

    @classmethod
    def from_response(
        cls, response: TokenResponse, *, fingerprint: str, grant: str, previous: TokenRecord | None = None
    ) -> TokenRecord:
        """A record from a token response; a refresh that returns no new refresh token keeps the old one."""
        now = time.time()
        account = _account_of(response.id_claims) or (previous.account if previous else None)
        refresh = response.refresh_token or (previous.refresh_token if previous else None)
        scopes = response.scopes or (previous.scopes if previous else ())
        return cls(response.access_token, now + response.expires_in, refresh, scopes, account, fingerprint, now, grant)

    def expires_soon(self, now: float | None = None) -> bool:
        """True when the access token is expired or near it (see :func:`expires_soon`)."""
        return expires_soon(self.expires_at, self.obtained_at, now)

    def without_access_token(self) -> TokenRecord:
        """The record with its access token marked expired (the server refused it)."""
        return replace(self, expires_at=0.0)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "access_token": self.access_token.reveal(),
                "expires_at": self.expires_at,
                "refresh_token": self.refresh_token.reveal() if self.refresh_token else None,
                "scopes": list(self.scopes),
                "account": self.account,
                "fingerprint": self.fingerprint,
                "obtained_at": self.obtained_at,
                "grant": self.grant,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> TokenRecord | None:
        """The record, or None when the stored value is not one (the caller then asks to sign in)."""
        try:
            data = json.loads(text)
            if data.get("version") != 1:
                return None
            refresh = data.get("refresh_token")
            return cls(
                access_token=Secret(str(data["access_token"])),
                expires_at=float(data["expires_at"]),
                refresh_token=Secret(str(refresh)) if refresh else None,
                scopes=tuple(str(s) for s in data.get("scopes", ())),
                account=data.get("account"),
                fingerprint=str(data["fingerprint"]),
                obtained_at=float(data.get("obtained_at", 0.0)),
                grant=str(data.get("grant", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class TokenStore(Protocol):
    """Where one login's :class:`TokenRecord` lives: the local vault (:class:`VaultTokenStore`), or a
    service's database. ``update`` must be atomic across threads and processes: renewal runs inside it."""

    def load(self) -> TokenRecord | None:
        """The stored record, or None."""
        ...

    def save(self, record: TokenRecord) -> None:
        """Store ``record`` in place of any other."""
        ...

    def update(self, change: Callable[[TokenRecord | None], TokenRecord | None]) -> TokenRecord | None:
        """Replace the record with ``change(current)`` under the store's lock; returns the new record."""
        ...

    def delete(self) -> bool:
        """Forget the record; False when there was none."""
        ...


#: name (a mode's ``token_name``) → its :class:`TokenStore`.
TokenStores = Callable[[str], TokenStore]


def replace_in_redactor(old: TokenRecord | None, new: TokenRecord | None) -> None:
    """Renewed tokens take the old ones' place in the redactor (it would otherwise keep every token ever seen)."""
    if new is None or old is None:
        return
    for attribute in ("access_token", "refresh_token"):
        before, after = getattr(old, attribute), getattr(new, attribute)
        if before is not None and after is not None and before != after:
            redact_instead(before.reveal(), after.reveal())


class VaultTokenStore:
    """The vault entry ``<name>/token`` holding one :class:`TokenRecord`."""

    def __init__(self, vault: CredentialVault, name: str) -> None:
        self.vault = vault
        self.name = name

    def __repr__(self) -> str:
        return f"VaultTokenStore(vault:{self.name}/{_TOKEN_ATTRIBUTE})"

    def load(self) -> TokenRecord | None:
        entries = self.vault.list()
        if _TOKEN_ATTRIBUTE not in entries.get(self.name, []):
            return None
        return TokenRecord.from_json(self.vault.get(self.name, _TOKEN_ATTRIBUTE).reveal())

    def save(self, record: TokenRecord) -> None:
        self.vault.set(self.name, _TOKEN_ATTRIBUTE, record.to_json())

    def update(self, change: Callable[[TokenRecord | None], TokenRecord | None]) -> TokenRecord | None:
        """Replace the record with ``change(current)`` while holding the vault lock."""
        result: list[TokenRecord | None] = [None, None]

        def apply(current: str | None) -> str | None:
            result[1] = old = TokenRecord.from_json(current) if current else None
            new = change(old)
            result[0] = new
            return new.to_json() if new is not None else None

        self.vault.update(self.name, _TOKEN_ATTRIBUTE, apply)
        new, old = result
        replace_in_redactor(old, new)
        return new

    def delete(self) -> bool:
        """Forget the tokens; False when there were none."""
        if _TOKEN_ATTRIBUTE not in self.vault.list().get(self.name, []):
            return False
        self.vault.delete(self.name, _TOKEN_ATTRIBUTE)
        return True


def fingerprint(*parts: str) -> str:
    """A short hash naming an app registration and grant without revealing its ids."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def unverified_claims(jwt: str) -> dict[str, Any]:
    """The claims of a JWT, *not verified*: only for showing who signed in, never for trust."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return {}
    return claims if isinstance(claims, dict) else {}


def _account_of(claims: Mapping[str, Any]) -> str | None:
    for key in ("preferred_username", "email", "upn", "unique_name"):
        value = claims.get(key)
        if isinstance(value, str) and value:
            return value
    return None
