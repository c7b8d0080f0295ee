"""The OAuth2 CLI as a user runs it: `postroom connect --auth oauth2-pkce`, `postroom auth login`
in a real subprocess (the test plays the browser on the URL it prints), then status, mail
commands and logout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from postroom.credentials import CredentialVault
from tests.browser import Browser
from tests.servers.dovecot import Dovecot
from tests.servers.ews import EwsServerUnderTest
from tests.servers.oauth import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, PUBLIC_CLIENT, AuthorizationServerUnderTest

POSTROOM = [sys.executable, "-m", "postroom"]


def postroom(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*POSTROOM, *args], env=env, capture_output=True, text=True, timeout=60)


def oauth_profile_args(server: AuthorizationServerUnderTest, dovecot: Dovecot, name: str, *extra: str) -> list[str]:
    assert dovecot.certs is not None
    return [
        "connect", name,
        "--host", "localhost", "--port", str(dovecot.ports["imaps"]), "--ca-file", str(dovecot.certs.ca_file),
        "--oauth-provider", "microsoft365", "--authority", server.authority,
        "--oauth-ca-file", str(server.ca_file),
        *extra,
    ]  # fmt: skip


def auth_login(server: AuthorizationServerUnderTest, name: str, user: str, env: dict[str, str]) -> tuple[str, str]:
    """`postroom auth login NAME --no-browser`, with the test as the user opening the URL it prints."""
    login = subprocess.Popen(
        [*POSTROOM, "auth", "login", name, "--no-browser", "--timeout", "30"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert login.stderr is not None
    printed = []
    browser = Browser(server, user)
    for line in login.stderr:
        printed.append(line)
        if line.strip().startswith("https://"):
            browser(line.strip())
            break
    out, err = login.communicate(timeout=60)
    browser.join()
    assert login.returncode == 0, "".join(printed) + err
    assert not browser.errors, browser.errors
    return out, "".join(printed) + err


def test_connect_auth_login_status_list_logout(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str, isolated_home: Path
) -> None:
    dovecot.deliver(mailbox_user, b"Subject: PO 4711\r\nFrom: buyer@example.test\r\n\r\nplease\r\n")
    env = {**os.environ, "POSTROOM_HOME": str(isolated_home), "BOT_MAILBOX": mailbox_user}
    saved = postroom(
        *oauth_profile_args(
            authorization_server, dovecot, "orders",
            "--auth", "oauth2-pkce", "--client-id", PUBLIC_CLIENT, "--username", "env:BOT_MAILBOX",
            "--redirect-uri", "http://localhost:0/Callback",
        ),
        env=env,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert "sign in with: postroom auth login orders" in saved.stdout
    assert "stored in the vault" not in saved.stderr and "insecure" not in saved.stderr
    profile = json.loads((isolated_home / "profiles.json").read_text())["orders"]
    assert profile["auth"]["mode"] == "oauth2-pkce"
    assert profile["auth"]["client_id"] == PUBLIC_CLIENT  # an identifier typed in: kept as given, no secret

    before = postroom("auth", "status", "orders", env=env)
    assert before.returncode == 7
    assert "not signed in" in before.stderr and "postroom auth login orders" in before.stderr

    out, err = auth_login(authorization_server, "orders", mailbox_user, env)
    assert f"signed in: orders — {mailbox_user} (oauth2-pkce, microsoft365)" in out
    assert "refresh token  yes" in out and "vault:profile:orders/token (encrypted)" in out

    status = postroom("auth", "status", "orders", "--json", env=env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["account"] == mailbox_user and data["refresh_token"] is True
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in data["scopes"]
    record = CredentialVault.default().get("profile:orders", "token").reveal()
    tokens = json.loads(record)
    for text in (status.stdout, status.stderr, out, err):
        assert tokens["access_token"] not in text and tokens["refresh_token"] not in text

    listed = postroom("list", "--session", "orders", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [m["subject"] for m in json.loads(listed.stdout)["messages"]] == ["PO 4711"]

    tested = postroom("test-connection", "orders", env=env)
    assert tested.returncode == 0, tested.stderr
    assert f"logged in as {mailbox_user} (env:BOT_MAILBOX)" in tested.stdout

    logout = postroom("auth", "logout", "orders", env=env)
    assert logout.returncode == 0 and "removed the tokens of 'orders'" in logout.stdout
    after = postroom("list", "--session", "orders", env=env)
    assert after.returncode == 7
    assert after.stderr.count("\n") == 1 and "run `postroom auth login orders`" in after.stderr


def test_client_credentials_profile_checks_the_app_with_auth_login(
    authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, mailbox_user: str, isolated_home: Path
) -> None:
    authorization_server.app_mailboxes[CONFIDENTIAL_CLIENT] = mailbox_user
    env = {**os.environ, "POSTROOM_HOME": str(isolated_home), "APP_SECRET": CONFIDENTIAL_SECRET}
    saved = postroom(
        *oauth_profile_args(
            authorization_server, dovecot, "daemon",
            "--auth", "oauth2-client-credentials", "--client-id", CONFIDENTIAL_CLIENT,
            "--client-secret", "env:APP_SECRET", "--username", mailbox_user,
        ),
        env=env,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    login = postroom("auth", "login", "daemon", env=env)
    assert login.returncode == 0, login.stderr
    assert "signed in: daemon" in login.stdout and "oauth2-client-credentials" in login.stdout
    assert "refresh token  no" in login.stdout
    tested = postroom("test-connection", "daemon", "--json", env=env)
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["username"] == mailbox_user


def test_connect_refuses_incomplete_oauth_settings(isolated_home: Path) -> None:
    env = {**os.environ, "POSTROOM_HOME": str(isolated_home)}
    base = ["connect", "x", "--provider", "gmail"]
    no_client = postroom(*base, "--auth", "oauth2-pkce", env=env)
    assert no_client.returncode == 3 and "client_id: is required with --auth oauth2-pkce" in no_client.stderr
    gmail_app_only = postroom(
        *base, "--auth", "oauth2-client-credentials", "--client-id", "env:X", "--client-secret", "env:Y",
        "--username", "a@b.example", env=env,
    )  # fmt: skip
    assert gmail_app_only.returncode == 3
    assert "Gmail has no OAuth2 client-credentials grant" in gmail_app_only.stderr
    password_with_oauth = postroom(
        *base, "--auth", "oauth2-pkce", "--client-id", "env:X", "--password", "env:P", env=env
    )
    assert (
        password_with_oauth.returncode == 3
        and "password: is not used with --auth oauth2-pkce" in password_with_oauth.stderr
    )


def test_ews_with_the_implicit_grant_from_the_cli(
    authorization_server: AuthorizationServerUnderTest, ews_server: EwsServerUnderTest, isolated_home: Path
) -> None:
    user = "bot@example.test"
    ews_server.deliver(b"Subject: ticket 12\r\nFrom: desk@example.test\r\n\r\nplease\r\n")
    env = {**os.environ, "POSTROOM_HOME": str(isolated_home), "BOT_MAILBOX": user}
    saved = postroom(
        "connect", "legacy", "--protocol", "ews", "--url", ews_server.url, "--ca-file", str(ews_server.ca_file),
        "--auth", "oauth2-implicit", "--client-id", PUBLIC_CLIENT, "--username", "env:BOT_MAILBOX",
        "--authority", authorization_server.authority, "--oauth-ca-file", str(authorization_server.ca_file),
        "--redirect-uri", "http://localhost:0/Callback",
        env=env,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert "warning: OAuth2 implicit returns the access token in the browser's address" in saved.stderr
    assert "sign in with: postroom auth login legacy" in saved.stdout
    out, _ = auth_login(authorization_server, "legacy", user, env)
    assert "signed in: legacy" in out and "(oauth2-implicit, microsoft365)" in out
    assert "refresh token  none (implicit grant): sign in again when the access token expires" in out
    listed = postroom("list", "--session", "legacy", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [m["subject"] for m in json.loads(listed.stdout)["messages"]] == ["ticket 12"]
    authorization_server.revoke_access_tokens(user)
    refused = postroom("list", "--session", "legacy", env=env)
    assert refused.returncode == 7 and "run `postroom auth login legacy`" in refused.stderr
