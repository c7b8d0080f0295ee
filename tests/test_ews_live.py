"""Opt-in test against a real Exchange server over EWS (``pytest -m live``); skipped unless configured.
Nothing here runs in the default suite or in CI. It only reads: test connection and one headers-only loop.

    POSTROOM_LIVE_EWS_URL (or POSTROOM_LIVE_EWS_HOST), POSTROOM_LIVE_EWS_USER, POSTROOM_LIVE_EWS_PASSWORD
    [, POSTROOM_LIVE_EWS_AUTH=basic|ntlm, POSTROOM_LIVE_EWS_DOMAIN, POSTROOM_LIVE_EWS_MAILBOX,
       POSTROOM_LIVE_EWS_VERSION, POSTROOM_LIVE_EWS_CA_FILE]
"""

from __future__ import annotations

import os

import pytest

import postroom
from postroom import Basic, Ews, Ntlm, Variable

pytestmark = pytest.mark.live


def test_exchange_over_ews_test_connection_and_a_loop() -> None:
    env = os.environ
    if not (env.get("POSTROOM_LIVE_EWS_URL") or env.get("POSTROOM_LIVE_EWS_HOST")) or not env.get(
        "POSTROOM_LIVE_EWS_PASSWORD"
    ):
        pytest.skip("live test: set POSTROOM_LIVE_EWS_URL (or _HOST), _USER and _PASSWORD")
    mode = Ntlm if env.get("POSTROOM_LIVE_EWS_AUTH", "basic") == "ntlm" else Basic
    config = Ews(
        url=env.get("POSTROOM_LIVE_EWS_URL"),
        host=env.get("POSTROOM_LIVE_EWS_HOST"),
        domain=env.get("POSTROOM_LIVE_EWS_DOMAIN"),
        mailbox=env.get("POSTROOM_LIVE_EWS_MAILBOX"),
        version=env.get("POSTROOM_LIVE_EWS_VERSION"),
        ca_file=env.get("POSTROOM_LIVE_EWS_CA_FILE"),
        auth=mode(username=Variable("POSTROOM_LIVE_EWS_USER"), password=Variable("POSTROOM_LIVE_EWS_PASSWORD")),
    )
    tested = postroom.test_connection(config, variables=dict(env))
    assert tested.report.protocol == "ews" and (tested.report.folder_count or 0) > 0
    with postroom.connect("live-ews", config, variables=dict(env)) as session:
        for message in postroom.messages(session, limit=5):
            assert message.key.id and isinstance(message.subject, str)
