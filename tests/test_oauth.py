"""OAuth2 end to end: a real authorization server (Authlib), Dovecot validating tokens through its
oauth2 passdb, and the test SMTP server validating them through RFC 7662 introspection.

The "browser" is played by the test (tests/browser.py): it opens the authorize URL, submits the
login form and follows the redirect to postroom's loopback listener.
"""

from __future__ import annotations

import logging
import threading
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

import postroom
from postroom import EmailServer, Variable, Vault
from postroom.auth import OAuth2ClientCredentials, OAuth2PKCE
from postroom.auth.oauth import VaultTokenStore as TokenStore
from postroom.credentials import CredentialVault
from postroom.errors import AuthenticationError, ConfigError, ConsentRequiredError, OAuthError
from postroom.transports.smtp import send_message
from tests.browser import Browser
from tests.conftest import server_config
from tests.oauth_modes import client_credentials, pkce, sign_in, variables
from tests.servers.dovecot import Dovecot
from tests.servers.oauth import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    AuthorizationServerUnderTest,
)
from tests.servers.smtp import SmtpServerUnderTest

PROVIDERS = ["microsoft365", "gmail", "custom"]  # MSAL, then Authlib with Google's parameters, then plain Authlib


def smtps_with(mode: Any, smtp: SmtpServerUnderTest, dovecot: Dovecot) -> postroom.SmtpServer:
    """A standalone SMTP server (implicit TLS) logging in with ``mode``."""
    assert dovecot.certs is not None
    return postroom.SmtpServer(
        host="localhost", port=smtp.ssl_port, security="ssl", ca_file=dovecot.certs.ca_file, auth=mode
    )


def inbox_count(session: postroom.Session) -> int:
    return len(list(postroom.messages(session.name)))


# -- each mode on IMAP, POP3 and SMTP --------------------------------------------------------


@pytest.mark.parametrize("provider", PROVIDERS)
def test_pkce_sign_in_then_imap_and_pop3(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str, provider: str
) -> None:
    dovecot.deliver(mailbox_user, b"Subject: invoice 1\r\nFrom: a@example.test\r\n\r\nbody\r\n")
    mode = pkce(authorization_server, provider)
    refreshes = authorization_server.count("refresh_token")
    player = sign_in(authorization_server, mode, mailbox_user)
    assert player.listener_status == 200
    assert player.landed_on is not None and urlsplit(player.landed_on).path == "/Callback"
    if provider == "microsoft365":  # response_mode=form_post: the code never appears in a URL
        assert "code=" not in player.landed_on

    record = TokenStore(CredentialVault.default(), mode.token_name).load()
    assert record is not None and record.refresh_token is not None
    if provider != "custom":
        assert record.account == mailbox_user  # from the ID token
    for protocol in ("imap", "pop3"):
        config = server_config(dovecot, protocol, auth=mode)
        with postroom.connect(f"o-{protocol}", config, variables=variables(mailbox_user)) as session:
            assert [m.subject for m in postroom.messages(session.name)] == ["invoice 1"]
    assert authorization_server.count("refresh_token") == refreshes  # the stored token was used as it was


def test_pkce_token_sends_through_smtp_with_xoauth2_or_oauthbearer(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str
) -> None:
    mode = pkce(authorization_server)
    sign_in(authorization_server, mode, mailbox_user)
    config = server_config(
        dovecot, auth=mode, smtp_host="localhost", smtp_port=smtp.starttls_port, smtp_security="starttls"
    )
    with postroom.connect("o-send", config, variables=variables(mailbox_user)) as session:
        postroom.send(session.name, to=mailbox_user, subject="sent with a token", body="hello")
        assert [m.subject for m in postroom.messages(session.name)] == ["sent with a token"]


def test_client_credentials_on_imap_pop3_and_smtp(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str
) -> None:
    authorization_server.app_mailboxes[CONFIDENTIAL_CLIENT] = mailbox_user  # the service principal's FullAccess
    dovecot.deliver(mailbox_user, b"Subject: alert\r\nFrom: monitor@example.test\r\n\r\ndisk full\r\n")
    mode = client_credentials(authorization_server)
    names = variables(mailbox_user, CONFIDENTIAL_CLIENT)
    before = authorization_server.count("client_credentials")
    for protocol in ("imap", "pop3"):
        config = server_config(dovecot, protocol, auth=mode)
        with postroom.connect(f"cc-{protocol}", config, variables=names) as session:
            assert [m.subject for m in postroom.messages(session.name)] == ["alert"]
    smtp_server = smtps_with(mode, smtp, dovecot)
    postroom.send(smtp_server, to=mailbox_user, subject="app-only send", body="x", variables=names)
    # one token request served all three logins: the token is cached (encrypted) in the vault
    assert authorization_server.count("client_credentials") == before + 1
    assert smtp.received[-1][1] == [mailbox_user]


def test_tokens_are_in_the_vault_encrypted_never_in_clear(
    authorization_server: AuthorizationServerUnderTest, mailbox_user: str
) -> None:
    mode = pkce(authorization_server)
    sign_in(authorization_server, mode, mailbox_user)
    vault = CredentialVault.default()
    record = TokenStore(vault, mode.token_name).load()
    assert record is not None and record.refresh_token is not None
    on_disk = vault.path.read_bytes()
    assert record.access_token.reveal().encode() not in on_disk
    assert record.refresh_token.reveal().encode() not in on_disk
    assert "token" in vault.list()[mode.token_name]
    assert record.access_token.reveal() not in repr(record)


# -- refresh, rotation, revocation ------------------------------------------------------------


def test_token_about_to_expire_is_refreshed_and_the_refresh_token_rotated(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(authorization_server, "lifetime", 1)  # renewed in its last tenth: after 0.9 s
    mode = pkce(authorization_server)
    sign_in(authorization_server, mode, mailbox_user)
    store = TokenStore(CredentialVault.default(), mode.token_name)
    first = store.load()
    assert first is not None and first.refresh_token is not None
    time.sleep(max(0.0, first.expires_at - 0.1 - time.time()))
    assert first.expires_soon()

    refreshes = authorization_server.count("refresh_token")
    with postroom.connect("o-refresh", server_config(dovecot, auth=mode), variables=variables(mailbox_user)):
        pass
    assert authorization_server.count("refresh_token") == refreshes + 1
    second = store.load()
    assert second is not None and second.refresh_token is not None
    assert second.access_token != first.access_token
    assert second.refresh_token != first.refresh_token  # rotated, and the new one is what the vault holds
    assert second.account == first.account == mailbox_user
    # the old refresh token is dead at the server: keeping it would have locked the bot out
    reuse = requests.post(
        authorization_server.token_url,
        data={"grant_type": "refresh_token", "refresh_token": first.refresh_token.reveal(), "client_id": PUBLIC_CLIENT},
        verify=str(authorization_server.ca_file),
        timeout=10,
    )
    assert reuse.json()["error"] == "invalid_grant"


def test_token_rejected_mid_loop_is_renewed_and_the_loop_carries_on(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str
) -> None:
    for n in range(6):
        dovecot.deliver(mailbox_user, f"Subject: ticket {n}\r\nFrom: a@example.test\r\n\r\nx\r\n".encode())
    mode = pkce(authorization_server)
    sign_in(authorization_server, mode, mailbox_user)
    refreshes = authorization_server.count("refresh_token")
    with postroom.connect("o-mid", server_config(dovecot, auth=mode), variables=variables(mailbox_user)) as session:
        seen = []
        for message in postroom.messages(session.name, order="oldest"):
            seen.append(message.subject)
            if len(seen) == 3:
                # the provider revokes the token (password change, admin, expiry) and the server drops us
                assert authorization_server.revoke_access_tokens(mailbox_user) >= 1
                dovecot.kick(mailbox_user)
            postroom.mark_read(session.name, message)
        assert seen == [f"ticket {n}" for n in range(6)]
        assert session.reconnects == 1
    assert authorization_server.count("refresh_token") == refreshes + 1


def test_revoked_refresh_token_asks_to_sign_in_again(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str
) -> None:
    mode = pkce(authorization_server, token_name="profile:invoices")
    sign_in(authorization_server, mode, mailbox_user)
    authorization_server.revoke_access_tokens(mailbox_user)
    authorization_server.revoke_refresh_tokens(mailbox_user)
    with pytest.raises(ConsentRequiredError) as raised:
        postroom.connect("o-revoked", server_config(dovecot, auth=mode), variables=variables(mailbox_user))
    message = str(raised.value)
    assert "invalid_grant" in message and "expired, revoked" in message
    assert "sign in again: call OAuth2PKCE(...).login()" in message  # a library caller's words
    assert raised.value.exit_code == 7
    # a runtime gives its own words (the CLI names its command), with the session's name
    cli_like = postroom.Runtime(sign_in_hint="run `postroom auth login {session}`")
    with pytest.raises(ConsentRequiredError, match="run `postroom auth login invoices`"):
        cli_like.connect("invoices", server_config(dovecot, auth=mode), variables=variables(mailbox_user))


def test_never_signed_in_says_how_to_sign_in(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str
) -> None:
    mode = pkce(authorization_server)
    with pytest.raises(ConsentRequiredError, match=r"not signed in.*login\(\)"):
        postroom.connect("o-none", server_config(dovecot, auth=mode), variables=variables(mailbox_user))


# -- wrong scope, wrong user ------------------------------------------------------------------


def test_token_without_the_mail_scope_is_refused_with_the_scope_named(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str
) -> None:
    mode = pkce(authorization_server, "custom", scopes=("openid", "profile"))
    sign_in(authorization_server, mode, mailbox_user)
    # IMAP (Dovecot reports every failure as status 401): the token is renewed once, then the error
    with pytest.raises(AuthenticationError, match="refused a freshly issued token") as imap_error:
        postroom.connect("o-scope", server_config(dovecot, auth=mode), variables=variables(mailbox_user))
    assert imap_error.value.sasl_status in {"401", "invalid_token"}
    # SMTP checks the scope and says so: no renewal, the scope is named
    smtp_server = smtps_with(mode, smtp, dovecot)
    with pytest.raises(AuthenticationError, match=r"lacks the permission \(scope\)") as smtp_error:
        postroom.send(smtp_server, to=mailbox_user, subject="x", body="x", variables=variables(mailbox_user))
    assert smtp_error.value.sasl_status in {"400", "insufficient_scope"}
    assert "https://mail.google.com/" in str(smtp_error.value)


def test_token_of_another_user_is_refused_naming_both_users(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str
) -> None:
    mode = pkce(authorization_server)
    sign_in(authorization_server, mode, mailbox_user, as_user="someone.else@example.test")
    with pytest.raises(AuthenticationError) as raised:
        postroom.connect("o-other", server_config(dovecot, auth=mode), variables=variables(mailbox_user))
    message = str(raised.value)
    assert f"refused the token for {mailbox_user}" in message
    assert "belongs to someone.else@example.test" in message
    assert "shared mailbox" in message


def test_shared_mailbox_uses_the_mailbox_address_as_sasl_user(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str, caplog: Any
) -> None:
    # Dovecot only lets a token open its own user's mailbox, so the refusal shows which user was sent
    mode = pkce(authorization_server, mailbox="shared-desk@example.test")
    sign_in(authorization_server, mode, mailbox_user)
    with pytest.raises(AuthenticationError, match="refused the token for shared-desk@example.test"):
        postroom.connect("o-shared", server_config(dovecot, auth=mode), variables=variables(mailbox_user))


# -- the browser side -------------------------------------------------------------------------


def test_sign_in_declined_in_the_browser(authorization_server: AuthorizationServerUnderTest, mailbox_user: str) -> None:
    mode = pkce(authorization_server)
    with pytest.raises(OAuthError, match="the sign-in was declined \\(access_denied"):
        sign_in(authorization_server, mode, mailbox_user, decision="deny")
    assert TokenStore(CredentialVault.default(), mode.token_name).load() is None


def test_forged_callback_is_refused_and_the_real_sign_in_still_completes(
    authorization_server: AuthorizationServerUnderTest, mailbox_user: str
) -> None:
    mode = pkce(authorization_server)
    real = Browser(authorization_server, mailbox_user)
    forged: dict[str, int] = {}

    def attack_then_sign_in(url: str) -> None:
        from urllib.parse import parse_qs

        redirect = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        # a page elsewhere fires the callback with its own code and a guessed state, then a wrong path
        forged["bad_state"] = requests.get(redirect, params={"code": "evil", "state": "guess"}, timeout=5).status_code
        forged["no_state"] = requests.get(redirect, params={"code": "evil"}, timeout=5).status_code
        forged["other_path"] = requests.get(redirect.replace("/Callback", "/callback"), timeout=5).status_code
        real(url)

    attacker = threading.Thread(target=lambda: None)

    def open_browser(url: str) -> bool:
        nonlocal attacker
        attacker = threading.Thread(target=attack_then_sign_in, args=(url,), daemon=True)
        attacker.start()
        return True

    record = mode.login(variables=variables(mailbox_user), open_browser=open_browser, timeout=15)
    attacker.join(timeout=10)
    real.join()
    assert forged == {"bad_state": 400, "no_state": 400, "other_path": 404}  # the path is case-sensitive
    assert record.account == mailbox_user


def test_no_browser_coming_back_times_out_clearly(authorization_server: AuthorizationServerUnderTest) -> None:
    mode = pkce(authorization_server)
    shown: list[str] = []
    with pytest.raises(OAuthError, match=r"no sign-in came back to http://localhost:\d+/Callback within 0.5 s"):
        mode.login(
            variables=variables("x@example.test"), open_browser=lambda _u: False, show_url=shown.append, timeout=0.5
        )
    assert shown and "code_challenge_method=S256" in shown[0] and "state=" in shown[0]


def test_redirect_port_in_use_is_a_clear_error(authorization_server: AuthorizationServerUnderTest) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        mode = pkce(authorization_server, redirect_uri=f"http://localhost:{port}/Callback")
        with pytest.raises(ConfigError, match=f"redirect_uri: cannot listen on 127.0.0.1:{port}"):
            mode.login(variables=variables("x@example.test"), open_browser=lambda _u: False, timeout=1)


# -- configuration errors, before any network traffic -----------------------------------------


def test_gmail_with_client_credentials_is_refused_naming_the_alternatives() -> None:
    with pytest.raises(ConfigError) as raised:
        OAuth2ClientCredentials(provider="gmail", client_id="id", client_secret=Vault("g", "s"), username="a@b.c")
    message = str(raised.value)
    assert "Gmail has no OAuth2 client-credentials grant" in message
    assert "OAuth2PKCE" in message and "docs/gmail.md" in message
    assert "domain-wide delegation" not in message  # postroom has no service accounts: never suggest one


def test_microsoft_needs_a_tenant_and_client_credentials_need_a_secret() -> None:
    with pytest.raises(ConfigError, match="tenant_id: is required for Microsoft 365.*never /common"):
        OAuth2PKCE(client_id=Vault("app", "id"))
    with pytest.raises(ConfigError, match="client_secret: is required"):
        OAuth2ClientCredentials(client_id=Vault("app", "id"), tenant_id=Vault("app", "tenant"), username="a@b.c")


def test_wrong_client_secret_names_the_field(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str
) -> None:
    mode = client_credentials(authorization_server)
    names = variables(mailbox_user, CONFIDENTIAL_CLIENT) | {"APP_SECRET": "not-the-secret-123"}
    with pytest.raises(OAuthError, match="client_id / client_secret: the authorization server does not accept"):
        postroom.connect("cc-bad", server_config(dovecot, auth=mode), variables=names)


def test_unknown_tenant_is_reported_as_the_tenant(authorization_server: AuthorizationServerUnderTest) -> None:
    mode = pkce(authorization_server, authority=authorization_server.base_url + "/no-such-tenant")
    with pytest.raises(OAuthError, match="tenant discovery failed: Unable to get authority.*check the tenant id"):
        mode.login(variables=variables("x@example.test"), open_browser=lambda _u: False, timeout=1)


def test_secrets_never_reach_logs_or_reprs(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    mode = client_credentials(authorization_server)
    authorization_server.app_mailboxes[CONFIDENTIAL_CLIENT] = mailbox_user
    with postroom.connect(
        "cc-log", server_config(dovecot, auth=mode), variables=variables(mailbox_user, CONFIDENTIAL_CLIENT)
    ):
        pass
    record = TokenStore(CredentialVault.default(), mode.token_name).load()
    assert record is not None
    token = record.access_token.reveal()
    # postroom's side only: the authorization server under test runs in this process and logs its own way
    client_side = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("authlib", "werkzeug")))
    assert token not in client_side and CONFIDENTIAL_SECRET not in client_side
    assert CONFIDENTIAL_SECRET not in repr(mode) and token not in repr(record)


def test_send_message_needs_no_session(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str
) -> None:
    """The SMTP transport itself speaks OAUTHBEARER/XOAUTH2 with a resolved token login."""
    authorization_server.app_mailboxes[CONFIDENTIAL_CLIENT] = mailbox_user
    mode = client_credentials(authorization_server)
    server = postroom.SmtpServer(
        host="localhost",
        port=smtp.starttls_port,
        security="starttls",
        ca_file=dovecot.certs.ca_file,  # type: ignore[union-attr]
        auth=None,
    )
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = mailbox_user, mailbox_user, "direct"
    message.set_content("x")
    from postroom.credentials import ResolveContext

    login = mode.resolve(ResolveContext(variables=variables(mailbox_user, CONFIDENTIAL_CLIENT)))
    receipt = send_message(server, login, message, mailbox_user, [mailbox_user])
    assert list(receipt.recipients) == [mailbox_user]


def test_email_server_hands_its_azure_cloud_to_the_oauth_mode() -> None:
    mode = OAuth2PKCE(client_id=Vault("app", "id"), tenant_id=Vault("app", "tenant"), username="bot@agency.gov")
    config = EmailServer(provider="microsoft365", azure_cloud="gcc-high", auth=mode)
    assert config.host == "outlook.office365.us"
    assert config.auth.azure_cloud == "gcc-high"  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="azure_cloud: the server is in Azure cloud 'gcc-high'"):
        EmailServer(
            provider="microsoft365",
            azure_cloud="gcc-high",
            auth=OAuth2PKCE(client_id=Vault("app", "id"), tenant_id=Vault("app", "tenant"), azure_cloud="global"),
        )
    with pytest.raises(ConfigError, match="Microsoft 365 OAuth2 app cannot sign in to Gmail"):
        EmailServer(provider="gmail", auth=mode)


@pytest.mark.parametrize(
    ("cloud", "login", "outlook"),
    [
        ("global", "login.microsoftonline.com", "outlook.office.com"),
        ("gcc-high", "login.microsoftonline.us", "outlook.office365.us"),
    ],
)
def test_microsoft_cloud_decides_every_url_the_flow_calls(cloud: str, login: str, outlook: str) -> None:
    from postroom.credentials import ResolveContext

    tenant = "8a1f0c2e-1111-4222-8333-944455556666"
    pkce_mode = OAuth2PKCE(client_id=Vault("app", "id"), tenant_id=Variable("TENANT"), azure_cloud=cloud)
    endpoints = pkce_mode.endpoints(ResolveContext(variables={"TENANT": tenant}))
    assert endpoints.authority == f"https://{login}/{tenant}"  # tenant-specific, never /common
    assert endpoints.authorize_url == f"https://{login}/{tenant}/oauth2/v2.0/authorize"
    assert endpoints.token_url == f"https://{login}/{tenant}/oauth2/v2.0/token"
    assert endpoints.delegated_scopes == (
        f"https://{outlook}/IMAP.AccessAsUser.All",
        f"https://{outlook}/POP.AccessAsUser.All",
        f"https://{outlook}/SMTP.Send",
    )
    app_host = "outlook.office365.us" if cloud == "gcc-high" else "outlook.office365.com"
    assert endpoints.app_scopes == (f"https://{app_host}/.default",)
    server = EmailServer(provider="microsoft365", azure_cloud=cloud, auth=pkce_mode)  # type: ignore[arg-type]
    assert server.host == ("outlook.office365.us" if cloud == "gcc-high" else "outlook.office365.com")
    assert server.smtp_host == ("smtp.office365.us" if cloud == "gcc-high" else "smtp.office365.com")


def test_headless_sign_in_prints_the_address_when_no_browser_opens(
    authorization_server: AuthorizationServerUnderTest, mailbox_user: str, capsys: Any, monkeypatch: Any
) -> None:
    from postroom.auth.oauth.sign_in import system_browser

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert system_browser("https://example.test/") is False  # no display: never a console browser
    mode = pkce(authorization_server)
    with pytest.raises(OAuthError, match="no sign-in came back"):
        mode.login(variables=variables(mailbox_user), open_browser=lambda _u: False, timeout=0.2)
    printed = capsys.readouterr().err
    assert "Open this address in a browser to sign in:" in printed and authorization_server.authorize_url in printed


def test_a_control_character_in_the_sasl_user_never_reaches_the_wire(
    authorization_server: AuthorizationServerUnderTest,
) -> None:
    from postroom.credentials import ResolveContext
    from postroom.errors import CredentialError

    mode = pkce(authorization_server, username=Variable("USER"))
    with pytest.raises(CredentialError, match="username: contains a control character"):
        mode.resolve(ResolveContext(variables={"USER": "bot@example.test\x01auth=Bearer forged", "APP_CLIENT_ID": "x"}))
