"""Renewing an OAuth2 login's access token: from the token store, over the authorization-server client.

Both are injected (a :class:`~postroom.auth.oauth.tokens.TokenStore` and a factory of
:class:`~postroom.auth.oauth.clients.OAuthClient`), so renewal runs the same against the
vault and a real server, or a service's database, or a test's scripted client.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from postroom.auth.oauth.clients import OAuthClient
from postroom.auth.oauth.tokens import TokenRecord, TokenStore
from postroom.credentials import Secret
from postroom.errors import ConsentRequiredError
from postroom.logs import get_logger

__all__ = ["VaultTokenSource"]

_log = get_logger("postroom.auth")


class VaultTokenSource:
    """Access tokens for one login, cached in the vault and renewed under the vault's lock."""

    def __init__(
        self,
        *,
        client: Callable[[], OAuthClient],
        store: TokenStore,
        fingerprint: str,
        grant: str,
        relogin: str,
        password: tuple[Secret, Secret] | None = None,
    ) -> None:
        self._client_factory = client
        self._password = password
        self._client: OAuthClient | None = None
        self.store = store
        self.fingerprint = fingerprint
        self.grant = grant
        self.relogin = relogin
        self._record: TokenRecord | None = None
        self._loaded = False
        self.renewed_by_server = False

    def __repr__(self) -> str:
        return f"VaultTokenSource({self.store!r})"

    def _current(self) -> TokenRecord | None:
        if not self._loaded:
            record = self.store.load()
            self._record = record if record is not None and record.fingerprint == self.fingerprint else None
            self._loaded = True
        return self._record

    @property
    def account(self) -> str | None:
        record = self._current()
        return record.account if record else None

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes the authorization server granted with the current token (for Test connection)."""
        record = self._current()
        return record.scopes if record else ()

    def access_token(self) -> Secret:
        record = self._current()
        if record is not None and not record.expires_soon():
            return record.access_token
        if record is not None and self.grant == "implicit" and time.time() < record.expires_at:
            return record.access_token  # cannot be renewed early: use it to its end
        return self._renew(rejected=None)

    def renew(self, rejected: Secret) -> Secret:
        _log.info("the mail server refused the access token; renewing it")
        return self._renew(rejected=rejected)

    def _renew(self, rejected: Secret | None) -> Secret:
        self.renewed_by_server = False

        def change(stored: TokenRecord | None) -> TokenRecord | None:
            current = stored if stored is not None and stored.fingerprint == self.fingerprint else None
            if current is not None and not current.expires_soon() and current.access_token != rejected:
                return stored  # another thread or process renewed it meanwhile
            self.renewed_by_server = True
            client = self._oauth_client()
            if self.grant == "client_credentials":
                response = client.client_credentials()
            elif self._password is not None and (current is None or current.refresh_token is None):
                response = client.password(*self._password)
            elif current is not None and self.grant == "implicit":
                raise ConsentRequiredError(
                    "the OAuth2 implicit sign-in's access token "
                    + ("was refused by the mail server" if rejected is not None else "has expired")
                    + " and the implicit grant has no refresh token",
                    hint=f"sign in again: {self.relogin}",
                )
            elif current is None or current.refresh_token is None:
                raise ConsentRequiredError(
                    "not signed in: the vault holds no OAuth2 token for this connection"
                    if current is None
                    else "the stored sign-in has no refresh token",
                    hint=f"sign in once: {self.relogin}",
                )
            else:
                try:
                    response = client.refresh(current.refresh_token)
                except ConsentRequiredError:
                    if self._password is None:
                        raise
                    response = client.password(*self._password)  # ROPC signs in again by itself
                rotated = response.refresh_token is not None and response.refresh_token != current.refresh_token
                _log.info("refreshed the OAuth2 access token%s", " (new refresh token stored)" if rotated else "")
            return TokenRecord.from_response(response, fingerprint=self.fingerprint, grant=self.grant, previous=current)

        record = self.store.update(change)
        assert record is not None
        self._record, self._loaded = record, True
        return record.access_token

    def _oauth_client(self) -> OAuthClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client
