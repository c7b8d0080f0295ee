"""The OAuth2 layers without a network: renewal over an injected client and token store, the two-phase
sign-in a web callback can drive, and settings checked by name. The real authorization server is in
test_oauth.py; here its place is taken by a scripted client, to reach every branch of renewal."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

import postroom
from postroom import ConfigError, ConsentRequiredError, OAuth2PKCE, Runtime, Variable
from postroom.auth.oauth.clients import AuthorizationRequest
from postroom.auth.oauth.endpoints import OAuthEndpoints
from postroom.auth.oauth.renewal import VaultTokenSource
from postroom.auth.oauth.sign_in import begin_sign_in, complete_sign_in
from postroom.auth.oauth.tokens import TokenRecord, TokenResponse, replace_in_redactor
from postroom.credentials import ResolveContext, Secret, redact


class MemoryTokenStore:
    """A TokenStore in a dict, as a service's database would hold them (update is atomic under the GIL here)."""

    def __init__(self) -> None:
        self.records: dict[str, TokenRecord] = {}
        self.name = "t"

    def load(self) -> TokenRecord | None:
        return self.records.get(self.name)

    def save(self, record: TokenRecord) -> None:
        self.records[self.name] = record

    def update(self, change: Callable[[TokenRecord | None], TokenRecord | None]) -> TokenRecord | None:
        old = self.records.get(self.name)
        new = change(old)
        if new is not None:
            self.records[self.name] = new
        replace_in_redactor(old, new)
        return new

    def delete(self) -> bool:
        return self.records.pop(self.name, None) is not None


class ScriptedClient:
    """An authorization-server client that answers from a script and counts the calls."""

    answer = "code"
    in_fragment = False

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.issued = 0
        self.refusing = False
        self.endpoints = OAuthEndpoints(
            provider="custom",
            authorize_url="https://login.example.test/authorize",
            token_url="https://login.example.test/token",
            delegated_scopes=("mail",),
            app_scopes=(),
        )

    def _tokens(self, *, rotate: bool = True) -> TokenResponse:
        self.issued += 1
        return TokenResponse(
            access_token=Secret(f"access-token-{self.issued:03d}"),
            expires_in=3600,
            refresh_token=Secret(f"refresh-token-{self.issued:03d}") if rotate else None,
            scopes=("mail",),
            id_claims={"preferred_username": "bot@example.test"},
        )

    def begin(self, redirect_uri: str, state: str, login_hint: str | None) -> AuthorizationRequest:
        self.calls.append("begin")
        return AuthorizationRequest(f"https://login.example.test/authorize?state={state}", state, redirect_uri)

    def redeem(self, request: AuthorizationRequest, callback: Mapping[str, str]) -> TokenResponse:
        self.calls.append(f"redeem {callback['code']}")
        return self._tokens()

    def refresh(self, refresh_token: Secret) -> TokenResponse:
        self.calls.append(f"refresh {refresh_token.reveal()}")
        if self.refusing:
            raise ConsentRequiredError("the refresh token was refused (invalid_grant)")
        return self._tokens()

    def client_credentials(self) -> TokenResponse:
        self.calls.append("client_credentials")
        return self._tokens(rotate=False)

    def password(self, username: Secret, password: Secret) -> TokenResponse:
        self.calls.append("password")
        return self._tokens()


def record(client: ScriptedClient, *, expires_in: float, refresh: str | None = "refresh-token-000") -> TokenRecord:
    return TokenRecord(
        access_token=Secret("access-token-000"),
        expires_at=time.time() + expires_in,
        refresh_token=Secret(refresh) if refresh else None,
        scopes=("mail",),
        account="bot@example.test",
        fingerprint="fp",
        obtained_at=time.time() + expires_in - 3600,  # an hour-long token, ``expires_in`` of it left
        grant="authorization_code",
    )


def source(client: ScriptedClient, store: MemoryTokenStore, grant: str = "authorization_code") -> VaultTokenSource:
    return VaultTokenSource(client=lambda: client, store=store, fingerprint="fp", grant=grant, relogin="sign in")


def test_a_fresh_token_is_used_without_a_request() -> None:
    client, store = ScriptedClient(), MemoryTokenStore()
    store.save(record(client, expires_in=3000))
    assert source(client, store).access_token().reveal() == "access-token-000"
    assert client.calls == []


def test_an_expiring_token_is_refreshed_and_the_rotated_refresh_token_kept() -> None:
    client, store = ScriptedClient(), MemoryTokenStore()
    store.save(record(client, expires_in=30))
    tokens = source(client, store)
    assert tokens.access_token().reveal() == "access-token-001"
    assert client.calls == ["refresh refresh-token-000"]
    stored = store.load()
    assert stored is not None and stored.refresh_token is not None
    assert stored.refresh_token.reveal() == "refresh-token-001"
    # the old values leave the redactor as the new ones join it: the set does not grow with every refresh
    assert redact("access-token-001 refresh-token-001") == "*** ***"
    assert redact("access-token-000") == "access-token-000"


def test_a_token_renewed_meanwhile_by_another_worker_is_taken_not_renewed_again() -> None:
    client, store = ScriptedClient(), MemoryTokenStore()
    store.save(record(client, expires_in=30))
    first, second = source(client, store), source(client, store)
    assert first.access_token().reveal() == "access-token-001"
    second._loaded = True  # second still holds the old, expiring record in memory
    second._record = record(client, expires_in=30)
    assert second.access_token().reveal() == "access-token-001"  # it found the renewed one under the lock
    assert client.calls == ["refresh refresh-token-000"]


def test_the_refresh_margin_is_a_tenth_of_the_lifetime_at_most_five_minutes() -> None:
    now = time.time()
    five_minutes = TokenRecord(Secret("a"), now + 300, None, (), None, "fp", now, "client_credentials")
    assert not five_minutes.expires_soon(now)  # Keycloak's default: renewed in its last 30 s, not at once
    assert not five_minutes.expires_soon(now + 269) and five_minutes.expires_soon(now + 271)
    hour = TokenRecord(Secret("b"), now + 3600, None, (), None, "fp", now, "client_credentials")
    assert not hour.expires_soon(now + 3299) and hour.expires_soon(now + 3301)


def test_a_refused_token_is_renewed_even_if_not_expiring() -> None:
    client, store = ScriptedClient(), MemoryTokenStore()
    store.save(record(client, expires_in=3000))
    tokens = source(client, store)
    assert tokens.renew(Secret("access-token-000")).reveal() == "access-token-001"


def test_no_token_or_no_refresh_token_asks_to_sign_in_and_sends_nothing() -> None:
    client, store = ScriptedClient(), MemoryTokenStore()
    with pytest.raises(ConsentRequiredError, match="not signed in"):
        source(client, store).access_token()
    store.save(record(client, expires_in=-10, refresh=None))
    with pytest.raises(ConsentRequiredError, match="no refresh token"):
        source(client, store).access_token()
    assert client.calls == []


def test_client_credentials_ask_again_instead_of_refreshing() -> None:
    client, store = ScriptedClient(), MemoryTokenStore()
    assert source(client, store, grant="client_credentials").access_token().reveal() == "access-token-001"
    assert client.calls == ["client_credentials"]


def pkce(**changes: Any) -> OAuth2PKCE:
    options: dict[str, Any] = {
        "client_id": Variable("APP"),
        "provider": "custom",
        "authorize_url": "https://login.example.test/authorize",
        "token_url": "https://login.example.test/token",
        "scopes": ("mail",),
        "username": Variable("USER"),
        "token_name": "oauth:flows",
    }
    options.update(changes)
    return OAuth2PKCE(**options)


def test_two_phase_sign_in_as_a_web_callback_drives_it(monkeypatch: pytest.MonkeyPatch) -> None:
    client = ScriptedClient()
    monkeypatch.setattr(type(pkce()), "authorization_flow", lambda self, app: client)
    stores: dict[str, MemoryTokenStore] = {}
    runtime = Runtime(
        token_stores=lambda name: stores.setdefault(name, MemoryTokenStore()),
        variables={"APP": "flows-test-app-id", "USER": "bot@example.test"},
    )
    context = runtime.context_for("web")
    mode = pkce()
    pending = begin_sign_in(mode, context, redirect_uri="https://postroom.example.test/oauth/callback")
    assert pending.redirect_uri == "https://postroom.example.test/oauth/callback"
    assert f"state={pending.state}" in pending.url
    with pytest.raises(postroom.AuthorizationDeniedError, match="does not belong to this sign-in"):
        complete_sign_in(pending, {"code": "c1", "state": "forged"})
    with pytest.raises(postroom.AuthorizationDeniedError, match="declined"):
        complete_sign_in(pending, {"error": "access_denied", "state": pending.state})
    done = complete_sign_in(pending, {"code": "c1", "state": pending.state})
    assert done.account == "bot@example.test"
    assert client.calls == ["begin", "redeem c1"]
    stored = stores["oauth:flows"].load()  # in the runtime's token store, not the vault
    assert stored is not None and stored.access_token.reveal() == "access-token-001"


def test_a_misspelt_setting_is_named() -> None:
    with pytest.raises(ConfigError, match="usernme: is not a setting of OAuth2PKCE"):
        pkce(usernme=Variable("USER"))


def test_the_context_s_words_are_the_sign_in_hint() -> None:
    mode = pkce()
    assert mode.relogin_hint(ResolveContext()) == "call OAuth2PKCE(...).login()"
    assert mode.relogin_hint(ResolveContext(sign_in_hint="open the portal")) == "open the portal"


def test_a_mode_is_a_value_binding_and_replacing_give_new_ones() -> None:
    mode = OAuth2PKCE(
        client_id=Variable("APP"), tenant_id=Variable("TENANT"), username=Variable("USER"), provider="microsoft365"
    )
    with pytest.raises(AttributeError, match=r"replace\(token_name=\.\.\.\)"):
        mode.token_name = "elsewhere"  # type: ignore[misc]
    renamed = mode.replace(token_name="oauth:elsewhere")
    assert renamed.token_name == "oauth:elsewhere" and mode.token_name != "oauth:elsewhere"
    for_ews = mode.for_server("microsoft365", "global", service="ews")
    assert for_ews is not mode and mode.service == "mail" and for_ews.service == "ews"
    assert for_ews.token_name != mode.token_name  # EWS tokens have their own entry
    assert (
        mode.endpoints(ResolveContext(variables={"TENANT": "t1"})).delegated_scopes[0].endswith("IMAP.AccessAsUser.All")
    )
    assert for_ews.endpoints(ResolveContext(variables={"TENANT": "t1"})).delegated_scopes == (
        "https://outlook.office365.com/EWS.AccessAsUser.All",
    )
    in_gcc = mode.for_server("microsoft365", "gcc-high")
    assert in_gcc.azure_cloud == "gcc-high" and mode.azure_cloud is None
    with pytest.raises(ConfigError, match="tenat_id: is not a setting"):
        mode.replace(tenat_id=Variable("T"))
