"""Opt-in tests against the real Microsoft 365 and Gmail (``pytest -m live``); skipped unless the
credentials are in the environment. Nothing here runs in the default suite or in CI.

Microsoft 365, app-only (client credentials)::

    POSTROOM_LIVE_MS_TENANT_ID, POSTROOM_LIVE_MS_CLIENT_ID, POSTROOM_LIVE_MS_CLIENT_SECRET,
    POSTROOM_LIVE_MS_MAILBOX [, POSTROOM_LIVE_MS_CLOUD=gcc-high]

Any provider, interactive (opens the system browser; a person signs in)::

    POSTROOM_LIVE_PKCE_PROVIDER=microsoft365|gmail, POSTROOM_LIVE_PKCE_CLIENT_ID,
    POSTROOM_LIVE_PKCE_MAILBOX [, POSTROOM_LIVE_PKCE_TENANT_ID, POSTROOM_LIVE_PKCE_CLIENT_SECRET]
"""

from __future__ import annotations

import os

import pytest

import postroom
from postroom import EmailServer, Variable
from postroom.auth import OAuth2ClientCredentials, OAuth2PKCE

pytestmark = pytest.mark.live


def _need(*names: str) -> None:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.skip(f"live test: set {', '.join(missing)}")


def test_microsoft365_client_credentials_imap() -> None:
    _need("POSTROOM_LIVE_MS_TENANT_ID", "POSTROOM_LIVE_MS_CLIENT_ID", "POSTROOM_LIVE_MS_CLIENT_SECRET",
          "POSTROOM_LIVE_MS_MAILBOX")  # fmt: skip
    mode = OAuth2ClientCredentials(
        client_id=Variable("POSTROOM_LIVE_MS_CLIENT_ID"),
        tenant_id=Variable("POSTROOM_LIVE_MS_TENANT_ID"),
        client_secret=Variable("POSTROOM_LIVE_MS_CLIENT_SECRET"),
        username=Variable("POSTROOM_LIVE_MS_MAILBOX"),
    )
    cloud = os.environ.get("POSTROOM_LIVE_MS_CLOUD", "global")
    config = EmailServer(provider="microsoft365", azure_cloud=cloud, auth=mode)  # type: ignore[arg-type]
    with postroom.connect("live-ms", config) as session:
        assert postroom.folders(session)


def test_interactive_pkce_imap() -> None:
    _need("POSTROOM_LIVE_PKCE_PROVIDER", "POSTROOM_LIVE_PKCE_CLIENT_ID", "POSTROOM_LIVE_PKCE_MAILBOX")
    provider = os.environ["POSTROOM_LIVE_PKCE_PROVIDER"]
    mode = OAuth2PKCE(
        provider=provider,  # type: ignore[arg-type]
        client_id=Variable("POSTROOM_LIVE_PKCE_CLIENT_ID"),
        tenant_id=Variable("POSTROOM_LIVE_PKCE_TENANT_ID") if provider == "microsoft365" else None,
        client_secret=Variable("POSTROOM_LIVE_PKCE_CLIENT_SECRET")
        if os.environ.get("POSTROOM_LIVE_PKCE_CLIENT_SECRET")
        else None,
        username=Variable("POSTROOM_LIVE_PKCE_MAILBOX"),
    )
    mode.login(show_url=print)
    with postroom.connect("live-pkce", EmailServer(provider=provider, auth=mode)) as session:
        assert postroom.folders(session)
