"""The shared credential vault: lockers with owners, managers, participants and consumer roles; standard and
user-provided attributes; values read only by consumers' runs, through Vault("locker/credential", ...)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import postroom
from postroom import Basic, EmailServer, SharedVault, Vault
from postroom.credentials import Secret
from postroom.errors import CredentialError
from tests.server_flows import ADMIN_PASSWORD, Team, role_ids, runner_key
from tests.servers.dovecot import SHARED_PASSWORD, Dovecot
from tests.servers.oauth import AuthorizationServerUnderTest
from tests.servers.postroom_server import ServerUnderTest
from tests.web import WebUser

#: The mailbox's password, kept in the locker: a canary that no page may show.
MAILBOX_PASSWORD = SHARED_PASSWORD


@pytest.fixture
def team(tmp_path: Path, authorization_server: AuthorizationServerUnderTest) -> Iterator[Team]:
    server = ServerUnderTest(home=tmp_path / "home", ca_file=Path(authorization_server.ca_file))
    try:
        yield Team.start(server)
    finally:
        server.stop()


def _user_id(team: Team, name: str) -> str:
    import re

    page = team.admin.get("/lockers/finance").text
    found = re.search(rf'name="owners" value="(\d+)"[^>]*> {name}<', page)
    assert found is not None, name
    return found.group(1)


def _finance(team: Team, mailbox_user: str) -> dict[str, WebUser]:
    """Locker "finance": alice owns it, pat participates, bob's role (Bot user) and runners consume it."""
    people = {"pat": team.add_user("pat", "Credential manager"), "bob": team.add_user("bob", "Bot user")}
    people["eve"] = team.add_user("eve", "Connection manager")  # nothing to do with the locker
    admin = team.admin
    assert admin.post("/lockers", {"name": "Finance", "description": "invoices"}, from_page="/lockers").ok
    admin.post(
        "/lockers/finance/credentials",
        {
            "name": "invoice-mailbox",
            "attr_0_name": "username",
            "attr_0_kind": "standard",
            "attr_0_value": mailbox_user,
            "attr_1_name": "password",
            "attr_1_kind": "standard",
            "attr_1_masked": "1",
            "attr_1_value": MAILBOX_PASSWORD,
            "attr_2_name": "pin",
            "attr_2_kind": "user",
            "attr_2_masked": "1",
        },
        from_page="/lockers/finance",
    )
    page = admin.get("/lockers/finance").text
    admin.post(
        "/lockers/finance/people",
        {
            "owners": [_user_id(team, "alice")],
            "participants": [_user_id(team, "pat")],
            "consumers": role_ids(page, "Bot runner", "Bot user", field="consumers"),
        },
        from_page="/lockers/finance",
    )
    return people


def test_each_member_of_a_locker_does_what_their_place_allows(team: Team, dovecot: Dovecot, mailbox_user: str) -> None:
    people = _finance(team, mailbox_user)
    pat, bob, eve = people["pat"], people["bob"], people["eve"]
    # the participant adds a credential of their own, and sees only their own
    pat.post(
        "/lockers/finance/credentials",
        {"name": "pats-api", "attr_0_name": "token", "attr_0_value": "p-1"},
        from_page="/lockers/finance",
    )
    seen_by_pat = pat.get("/lockers/finance").text
    assert "pats-api" in seen_by_pat and "invoice-mailbox" not in seen_by_pat
    assert 'id="access">participant' in seen_by_pat
    # the owner sees both; masked values show as dots, never as themselves
    owner_page = team.admin.get("/lockers/finance").text
    assert "pats-api" in owner_page and "invoice-mailbox" in owner_page and "••••••" in owner_page
    # the consumer sees the locker, gives their own user-provided value, and can change nothing else
    consumer_page = bob.get("/lockers/finance").text
    assert 'id="access">consumer' in consumer_page and "Add a credential" not in consumer_page
    bob.post(
        "/lockers/finance/credentials/invoice-mailbox/values", {"value_pin": "bob-4711"}, from_page="/lockers/finance"
    )
    refused = bob.post(
        "/lockers/finance/credentials/invoice-mailbox/values",
        {"value_password": "hijacked!"},
        from_page="/lockers/finance",
    )
    assert refused.status_code == 403
    assert (
        bob.post(
            "/lockers/finance/credentials", {"name": "x", "attr_0_name": "a"}, from_page="/lockers/finance"
        ).status_code
        == 403
    )
    assert bob.post("/lockers/finance/people", {"consumers": []}, from_page="/lockers/finance").status_code == 403
    # someone with no place in it is refused, the same whether it exists or not
    assert eve.get("/lockers/finance").status_code == 403
    assert eve.get("/lockers/no-such-locker").status_code == 403
    assert "finance" not in eve.get("/lockers").text
    for page in (*pat.seen, *bob.seen, *team.admin.seen, *eve.seen):
        assert MAILBOX_PASSWORD not in page and "bob-4711" not in page


def test_a_bot_reads_its_password_from_the_locker_and_logs_in_to_dovecot(
    team: Team, dovecot: Dovecot, mailbox_user: str
) -> None:
    _finance(team, mailbox_user)
    bob = WebUser(team.server.url)
    bob.sign_in("bob", ADMIN_PASSWORD)
    bob.post(
        "/lockers/finance/credentials/invoice-mailbox/values", {"value_pin": "bob-4711"}, from_page="/lockers/finance"
    )
    key = runner_key(team.server)
    assert dovecot.certs is not None
    config = EmailServer(
        host="localhost",
        port=dovecot.ports["imaps"],
        ca_file=dovecot.certs.ca_file,
        connect_timeout=5,
        auth=Basic(
            username=Vault("finance/invoice-mailbox", "username"), password=Vault("finance/invoice-mailbox", "password")
        ),
    )
    vault = SharedVault(team.server.url, Secret(key), user="bob", run_id="run-42")
    with postroom.Runtime(shared_vault=vault) as runtime, runtime.connect("locker-bot", config) as session:
        assert list(postroom.messages(session)) == []
        assert session.resolve_login().username.reveal() == mailbox_user
    assert vault.get("finance/invoice-mailbox", "pin", field_name="pin").reveal() == "bob-4711"
    audit = team.admin.get("/audit?action=credential.read").text
    assert "run-42" in audit and "finance/invoice-mailbox/password" in audit
    # the values a run read show nowhere else: not in a page, the audit log, the server's log or the database
    rows = "\n".join(map(str, team.server.sql("SELECT * FROM srv_audit")))
    dump = "\n".join(
        map(
            str,
            [*team.server.sql("SELECT * FROM srv_attribute"), *team.server.sql("SELECT * FROM srv_attribute_value")],
        )
    )
    for surface in (audit, team.admin.get("/lockers/finance").text, rows, team.server.log(), dump):
        assert MAILBOX_PASSWORD not in surface
        assert "bob-4711" not in surface


def test_a_run_outside_the_consumer_roles_is_refused_with_the_reason(team: Team, mailbox_user: str) -> None:
    _finance(team, mailbox_user)
    outsider = runner_key(team.server, "outsider", "Bot runner", "Connection manager")
    team.admin.post(
        "/lockers/finance/people", {"owners": [_user_id(team, "alice")], "consumers": []}, from_page="/lockers/finance"
    )
    vault = SharedVault(team.server.url, Secret(outsider))
    with pytest.raises(CredentialError, match="no consumer role of locker 'finance'"):
        vault.get("finance/invoice-mailbox", "password", field_name="password")
    page = team.admin.get("/lockers/finance").text
    team.admin.post(
        "/lockers/finance/people",
        {"owners": [_user_id(team, "alice")], "consumers": role_ids(page, "Bot runner", field="consumers")},
        from_page="/lockers/finance",
    )
    with pytest.raises(CredentialError, match="has no credential"):
        vault.get("finance/nothing", "password", field_name="password")
    user_less = SharedVault(team.server.url, Secret(outsider))
    with pytest.raises(CredentialError, match="user-provided"):
        user_less.get("finance/invoice-mailbox", "pin", field_name="pin")
