"""Opt-in tests against a real Microsoft 365 tenant through Graph (``pytest -m live``); skipped unless configured.
Nothing here runs in the default suite or in CI. They only read: Test connection and a headers-only loop.

App-only (client credentials; the app needs the application permission Mail.Read or Mail.ReadWrite, or an
RBAC for Applications role scoped to the mailbox):

    POSTROOM_LIVE_GRAPH_TENANT_ID, POSTROOM_LIVE_GRAPH_CLIENT_ID, POSTROOM_LIVE_GRAPH_CLIENT_SECRET,
    POSTROOM_LIVE_GRAPH_MAILBOX [, POSTROOM_LIVE_GRAPH_CLOUD=global|gcc-high|dod|china]

Delegated (a PKCE sign-in stored by ``postroom auth login``; the profile is named here):

    POSTROOM_LIVE_GRAPH_PROFILE
"""

from __future__ import annotations

import os

import pytest

import postroom
from postroom import OAuth2ClientCredentials, Outlook, Variable

pytestmark = pytest.mark.live


def test_app_only_test_connection_and_a_headers_only_loop() -> None:
    env = os.environ
    needed = ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET", "MAILBOX")
    if not all(env.get(f"POSTROOM_LIVE_GRAPH_{name}") for name in needed):
        pytest.skip("live test: set POSTROOM_LIVE_GRAPH_TENANT_ID, _CLIENT_ID, _CLIENT_SECRET and _MAILBOX")
    cloud = env.get("POSTROOM_LIVE_GRAPH_CLOUD", "global")
    auth = OAuth2ClientCredentials(
        client_id=Variable("POSTROOM_LIVE_GRAPH_CLIENT_ID"),
        tenant_id=Variable("POSTROOM_LIVE_GRAPH_TENANT_ID"),
        client_secret=Variable("POSTROOM_LIVE_GRAPH_CLIENT_SECRET"),
        azure_cloud=cloud,
    )
    config = Outlook(mailbox=env["POSTROOM_LIVE_GRAPH_MAILBOX"], auth=auth, azure_cloud=cloud)  # type: ignore[arg-type]
    tested = postroom.test_connection(config, variables=dict(env))
    assert tested.report.protocol == "outlook" and (tested.report.folder_count or 0) > 0
    with postroom.connect("live-graph", config, variables=dict(env)) as session:
        for message in postroom.messages(session, limit=5):
            assert message.key.id and isinstance(message.subject, str)
            assert message.item_kind in ("message", "meeting")


def test_a_signed_in_profile_reads_its_mailbox() -> None:
    name = os.environ.get("POSTROOM_LIVE_GRAPH_PROFILE")
    if not name:
        pytest.skip("live test: set POSTROOM_LIVE_GRAPH_PROFILE to an outlook profile signed in with auth login")
    from postroom.profiles import ProfileStore

    config = ProfileStore().load(name)
    with postroom.connect("live-graph-user", config) as session:
        assert len(list(postroom.messages(session, limit=3))) <= 3
