"""OAuth2 against a strict authorization server: Basic client authentication only, 5-minute tokens,
and tokens revoked while two sessions share them."""

from __future__ import annotations

import pytest

import postroom
from postroom import Variable
from postroom.auth import OAuth2ClientCredentials
from postroom.errors import OAuthError
from tests.conftest import server_config
from tests.servers.dovecot import Dovecot
from tests.servers.oauth import BASIC_ONLY_CLIENT, CONFIDENTIAL_SECRET, AuthorizationServerUnderTest


def strict_app(server: AuthorizationServerUnderTest, **changes: object) -> OAuth2ClientCredentials:
    """A custom provider's confidential app, as a user would give it."""
    options: dict[str, object] = {
        "provider": "custom",
        "client_id": Variable("APP_CLIENT_ID"),
        "client_secret": Variable("APP_SECRET"),
        "username": Variable("MAILBOX_USER"),
        "authorize_url": server.authorize_url,
        "token_url": server.token_url,
        "scopes": ("https://mail.google.com/",),
        "ca_file": str(server.ca_file),
    }
    return OAuth2ClientCredentials(**(options | changes))  # type: ignore[arg-type]


def names(user: str) -> dict[str, str]:
    return {"APP_CLIENT_ID": BASIC_ONLY_CLIENT, "APP_SECRET": CONFIDENTIAL_SECRET, "MAILBOX_USER": user}


@pytest.fixture
def app_user(authorization_server: AuthorizationServerUnderTest, mailbox_user: str) -> str:
    authorization_server.app_mailboxes[BASIC_ONLY_CLIENT] = mailbox_user
    return mailbox_user


def test_a_server_that_allows_only_basic_client_authentication(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, app_user: str
) -> None:
    config = server_config(dovecot, auth=strict_app(authorization_server))
    with postroom.connect("strict", config, variables=names(app_user)) as session:
        assert list(postroom.messages(session)) == []
    body = server_config(dovecot, auth=strict_app(authorization_server, client_auth="body", token_name="body"))
    with pytest.raises(OAuthError, match="client_id / client_secret"):
        postroom.connect("strict-body", body, variables=names(app_user))


def test_a_five_minute_token_is_not_renewed_at_every_login(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, app_user: str
) -> None:
    """A fixed 300 s margin renewed Keycloak's 5-minute tokens on every login."""
    authorization_server.lifetime = 300
    try:
        config = server_config(dovecot, auth=strict_app(authorization_server))
        before = authorization_server.count("client_credentials")
        for number in range(3):
            with postroom.connect(f"short-{number}", config, variables=names(app_user)) as session:
                list(postroom.messages(session))
        assert authorization_server.count("client_credentials") == before + 1
    finally:
        authorization_server.lifetime = 3600


def test_two_sessions_sharing_a_token_revoked_twice_ask_the_server_again(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, app_user: str
) -> None:
    """The session with the older copy takes the store's newer token; refused too, it asks the
    authorization server itself instead of giving up on 'a freshly issued token'."""
    config = server_config(dovecot, auth=strict_app(authorization_server))
    first = postroom.connect("first", config, variables=names(app_user))
    assert authorization_server.revoke_access_tokens(app_user) >= 1
    second = postroom.connect("second", config, variables=names(app_user))  # renews: the store's token is new
    assert authorization_server.revoke_access_tokens(app_user) >= 1
    before = authorization_server.count("client_credentials")
    dovecot.kick(app_user)  # both drop; the first reconnects with its old copy in hand
    assert list(postroom.messages(first)) == []
    assert authorization_server.count("client_credentials") == before + 1  # asked once, and it was enough
    second.close()
    first.close()
