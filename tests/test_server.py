"""postroom server, the real process: connections, shared and user-specific sign-ins, the runner API, the
refresh discipline, permissions on every route, CSRF, the OAuth state's checks, and a bot using Managed(...)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

import postroom
from tests.server_flows import ADMIN_PASSWORD, Team, create_connection, managed_imap, runner_key, token_for
from tests.servers.dovecot import Dovecot
from tests.servers.oauth import AuthorizationServerUnderTest
from tests.servers.postroom_server import POSTROOM, ServerUnderTest
from tests.web import WebUser

SIGNER = "mailbot@example.test"  # who signs in at the identity provider for the shared token


@pytest.fixture
def ca_bundle(tmp_path: Path, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot) -> Path:
    """The identity provider's and the mail server's CAs, as one bundle (the server's --ca-file)."""
    assert dovecot.certs is not None
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(Path(authorization_server.ca_file).read_bytes() + Path(dovecot.certs.ca_file).read_bytes())
    return bundle


@pytest.fixture
def server(tmp_path: Path, ca_bundle: Path, request: pytest.FixtureRequest) -> Iterator[ServerUnderTest]:
    """The server process; on PostgreSQL with two worker processes for tests marked ``@on_postgres``."""
    found = ServerUnderTest(home=tmp_path / "home", ca_file=ca_bundle)
    if getattr(request, "param", "sqlite") == "postgres":
        database = request.getfixturevalue("postgres")
        found.database_url = database.create_database(f"server_{abs(hash(request.node.nodeid)) % 10**9}")
        found.workers = 2
    yield found
    found.stop()


#: Run a test on SQLite (one worker process) and on PostgreSQL (two worker processes on one database).
on_both_databases = pytest.mark.parametrize("server", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def team(server: ServerUnderTest) -> Team:
    return Team.start(server)


def _shared_sign_in(team: Team, oauth: AuthorizationServerUnderTest, name: str = "contoso-mail") -> requests.Response:
    start = team.admin.post(f"/connections/{name}/sign-in", from_page=f"/connections/{name}", follow=False)
    return team.admin.sign_in_at_provider(start, oauth, SIGNER)


def test_the_server_starts_with_nothing_to_configure_and_keeps_its_key_out_of_the_database(
    server: ServerUnderTest,
) -> None:
    server.start()
    data = server.home / "data" / "server"
    key = data / "server.key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert requests.get(server.url + "/api/v1/health", timeout=5).json() == {"ok": True}
    page = requests.get(server.url + "/connections", timeout=5)
    assert page.url.endswith("/sign-in?next=/connections")  # pages need a signed-in user
    with sqlite3.connect(data / "server.sqlite3") as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        dumped = "\n".join(db.iterdump())
    assert {"srv_connection", "srv_token", "srv_audit"} <= names
    assert key.read_text().strip() not in dumped


def test_the_callback_url_shown_follows_public_base_url(
    server: ServerUnderTest, authorization_server: AuthorizationServerUnderTest
) -> None:
    team = Team.start(server)
    create_connection(team.admin, authorization_server)
    page = team.admin.get("/connections/contoso-mail").text
    assert f'value="{server.url}/oauth/callback" readonly' in page
    server.stop()
    server.public_base_url = "https://postroom.example.com/mail"
    server.start()
    # the session survived the restart (cookies are Secure now: a browser would come through the https proxy)
    page = team.admin.get("/connections/contoso-mail").text
    assert 'value="https://postroom.example.com/mail/oauth/callback" readonly' in page
    assert "https://postroom.example.com/mail/oauth/callback" in team.admin.get("/connections/new").text


@on_both_databases
def test_an_admin_signs_in_for_a_shared_token_and_a_bot_loops_over_dovecot_with_it(
    team: Team, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot
) -> None:
    dovecot.add_user(SIGNER)
    subject = f"hello managed {team.server.port}"
    dovecot.deliver(SIGNER, f"From: a@example.test\r\nTo: {SIGNER}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    create_connection(team.admin, authorization_server)
    page = team.admin.get("/connections/contoso-mail").text
    assert 'id="shared-status">Needs sign-in' in page
    back = _shared_sign_in(team, authorization_server)
    assert back.ok and "Signed in as mailbot@example.test" in back.text, back.text
    assert 'id="shared-status">Active' in back.text
    key = runner_key(team.server)
    with managed_imap(dovecot, team.server, key) as session:
        subjects = [mail.subject for mail in postroom.messages(session)]
    assert subject in subjects
    answer = token_for(team.server, key, "contoso-mail").json()
    assert set(answer) == {"access_token", "token_type", "expires_at", "subject", "hosts", "connection", "principal"}
    assert answer["subject"] == SIGNER and answer["hosts"] == ["outlook.office365.com", "smtp.office365.com"]
    audit = team.admin.get("/audit?action=token.issue").text
    assert "runner: runner-1" in audit and "run-1" in audit


def test_a_user_signs_in_for_a_user_specific_token_under_my_connections_and_a_run_gets_it(
    team: Team, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot
) -> None:
    create_connection(
        team.admin, authorization_server, name="personal", token_type="user", roles=("Bot user", "Bot runner")
    )
    bob = team.add_user("bob", "Bot user")
    mine = bob.get("/my/connections").text
    assert 'id="status-personal">Needs sign-in' in mine
    start = bob.post("/my/connections/personal/sign-in", from_page="/my/connections", follow=False)
    back = bob.sign_in_at_provider(start, authorization_server, "bob@example.test")
    assert 'id="status-personal">Active' in back.text, back.text
    key = runner_key(team.server)
    given = token_for(team.server, key, "personal", user="bob")
    assert given.status_code == 200 and given.json()["subject"] == "bob@example.test"
    assert given.json()["principal"] == "user"
    nobody = token_for(team.server, key, "personal")
    assert nobody.status_code == 400 and "user-specific" in nobody.json()["error"]
    team.add_user("carol", "Connection manager")  # in no invited role
    stranger = token_for(team.server, key, "personal", user="carol")
    assert stranger.status_code == 403 and "not in a role invited" in stranger.json()["error"]
    dovecot.add_user("bob@example.test")
    with managed_imap(dovecot, team.server, key, "personal", token="user", user="bob") as session:
        assert list(postroom.messages(session)) == []


def test_the_cli_connects_with_auth_managed_and_a_profile_keeps_only_references(
    team: Team, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, tmp_path: Path
) -> None:
    """`postroom connect NAME --auth managed ...` on a runner machine: the profile names the connection, the
    server and where the runner key comes from; Test connection logs in to Dovecot with the server's token."""
    from tests.servers.postroom_server import postroom_cli

    dovecot.add_user(SIGNER)
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    key = runner_key(team.server)
    assert dovecot.certs is not None
    runner_home = tmp_path / "runner-home"
    postroom_cli(
        runner_home,
        "connect", "managed-box", "--host", "localhost", "--port", str(dovecot.ports["imaps"]),
        "--ca-file", str(dovecot.certs.ca_file), "--auth", "managed", "--managed-connection", "contoso-mail",
        "--postroom-server", team.server.url, "--runner-key", "env:RUNNER_KEY",
    )  # fmt: skip
    auth = json.loads((runner_home / "profiles.json").read_text())["managed-box"]["auth"]
    assert auth["mode"] == "managed" and auth["connection"] == "contoso-mail" and auth["runner_key"] == "env:RUNNER_KEY"
    assert key not in (runner_home / "profiles.json").read_text()
    done = postroom_cli(runner_home, "test-connection", "managed-box", "--json", env={"RUNNER_KEY": key})
    report = json.loads(done.stdout)
    assert report["ok"] and report["username"] == SIGNER, report
    refused = subprocess.run(
        [POSTROOM, "connect", "bad", "--host", "localhost", "--auth", "managed", "--postroom-server", team.server.url],
        env={**os.environ, "POSTROOM_HOME": str(runner_home)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (
        refused.returncode != 0 and "managed_connection" in refused.stderr and "--managed-connection" in refused.stderr
    )


def test_the_runner_api_refuses_with_the_reason(team: Team, authorization_server: AuthorizationServerUnderTest) -> None:
    create_connection(team.admin, authorization_server, roles=("Bot runner",))
    invited = runner_key(team.server, "invited")
    outsider = runner_key(team.server, "outsider", "Bot user")
    assert token_for(team.server, "prk_1_" + "x" * 43, "contoso-mail").status_code == 401
    refused = token_for(team.server, outsider, "contoso-mail")
    assert refused.status_code == 403 and "Run bots" in refused.json()["error"]
    unsigned = token_for(team.server, invited, "contoso-mail")
    assert unsigned.status_code == 409 and unsigned.json()["status"] == "needs_sign_in"
    assert token_for(team.server, invited, "nothing-here").status_code == 404
    team.admin.post("/runners/1/revoke", from_page="/runners")
    assert token_for(team.server, invited, "contoso-mail").status_code == 401


def test_the_callback_refuses_a_replayed_forged_expired_or_cross_user_state(
    team: Team, authorization_server: AuthorizationServerUnderTest
) -> None:
    create_connection(team.admin, authorization_server, name="personal", token_type="user", roles=("Bot user",))
    bob = team.add_user("bob", "Bot user")
    mallory = team.add_user("mallory", "Bot user")

    def started(user: WebUser) -> dict[str, str]:
        """Begin a sign-in and stop at the provider: what its redirect back would carry (state, code)."""
        start = user.post("/my/connections/personal/sign-in", from_page="/my/connections", follow=False)
        import re
        from urllib.parse import parse_qs, urlsplit

        state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
        assert re.match(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$", state)
        return {"state": state, "code": "made-up-code"}

    forged = bob.get("/oauth/callback", params={"state": "forged.signature", "code": "x"})
    assert forged.status_code == 400 and "was not started here" in forged.text
    cross = started(bob)
    stolen = mallory.get("/oauth/callback", params=cross)
    assert stolen.status_code == 400 and "another user" in stolen.text
    replay = bob.get("/oauth/callback", params=cross)  # the state was taken by the refused try: single use
    assert replay.status_code == 400 and "used already" in replay.text
    late = started(bob)
    team.server.sql("UPDATE srv_sign_in SET expires_at = expires_at - 600")
    expired = bob.get("/oauth/callback", params=late)
    assert expired.status_code == 400 and "five minutes" in expired.text
    audit = team.admin.get("/audit?action=sign_in.callback&outcome=refused").text
    assert audit.count("sign_in.callback") >= 4


def test_every_route_checks_its_permission_for_every_role(
    team: Team, authorization_server: AuthorizationServerUnderTest
) -> None:
    """Walk every route of the UI as each built-in role and as nobody: allowed, or refused (and audited)."""
    from postroom.server.permissions import BUILTIN_ROLES, Permission
    from postroom.server.web.app import ROUTES

    create_connection(team.admin, authorization_server)
    team.admin.post("/lockers", {"name": "walk-locker"}, from_page="/lockers")
    team.admin.post(
        "/lockers/walk-locker/credentials",
        {"name": "walk-credential", "attr_0_name": "password", "attr_0_value": "x"},
        from_page="/lockers/walk-locker",
    )
    people = {role: team.add_user(role.lower().replace(" ", "-"), role) for role in BUILTIN_ROLES}
    anonymous = WebUser(team.server.url)
    samples = {
        "{name}": "contoso-mail",
        "{runner_id:int}": "999",
        "{user_id:int}": "999",
        "{locker}": "walk-locker",
        "{credential}": "walk-credential",
    }
    walked = 0
    last = [route for route in ROUTES if route[0] == "/sign-out"]  # walked last: it ends the sessions
    for path, methods, _handler, access in [*(r for r in ROUTES if r not in last), *last]:
        concrete = path
        for placeholder, value in samples.items():
            concrete = concrete.replace(placeholder, value)
        for method in methods:
            for role, person in [*people.items(), ("nobody", anonymous)]:
                granted = BUILTIN_ROLES.get(role, ("", frozenset()))[1]
                allowed = access.name in {"public", "signed in"} and (role != "nobody" or access.name == "public")
                allowed = allowed or bool(set(access.permissions) & granted)
                # none of the walkers belongs to walk-locker: only "Administer all lockers" opens it
                allowed = allowed or (access.name == "locker member" and Permission.ADMINISTER_LOCKERS in granted)
                if method == "GET":
                    reply = person.web.get(team.server.url + concrete, timeout=30, allow_redirects=False)
                else:
                    token = person.csrf_of("/my/connections") if role != "nobody" else ""
                    reply = person.web.post(
                        team.server.url + concrete, data={"csrf": token}, timeout=30, allow_redirects=False
                    )
                walked += 1
                if allowed:
                    assert reply.status_code not in {401, 403}, (role, method, concrete, reply.status_code)
                elif role == "nobody":
                    assert reply.status_code in {303, 401}, (method, concrete, reply.status_code)
                else:
                    assert reply.status_code == 403, (role, method, concrete, reply.status_code)
    assert walked > 100
    assert "permission.refused" in team.admin.get("/audit?action=permission.refused").text


def test_a_form_without_its_csrf_token_changes_nothing(
    team: Team, authorization_server: AuthorizationServerUnderTest
) -> None:
    create_connection(team.admin, authorization_server)
    reply = team.admin.web.post(team.server.url + "/connections/contoso-mail/delete", data={}, allow_redirects=False)
    assert reply.status_code == 403
    wrong = team.admin.web.post(team.server.url + "/connections/contoso-mail/delete", data={"csrf": "guess"})
    assert wrong.status_code == 403
    assert team.admin.get("/connections/contoso-mail").status_code == 200


def test_password_sign_in_is_rate_limited_and_pages_carry_the_security_headers(team: Team) -> None:
    stranger = WebUser(team.server.url)
    answers = [stranger.post("/sign-in", {"name": "alice", "password": "wrong guess!!"}).status_code for _ in range(6)]
    assert answers[:5] == [401] * 5 and answers[5] == 429
    assert stranger.post("/sign-in", {"name": "alice", "password": ADMIN_PASSWORD}).status_code == 429
    headers = team.admin.get("/connections").headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
    cookie = next(c for c in team.admin.web.cookies if c.name == "postroom_session")
    assert cookie.has_nonstandard_attr("HttpOnly")


def test_a_form_error_names_the_field(team: Team) -> None:
    page = team.admin.post(
        "/connections/new",
        {
            "name": "bad name",
            "provider": "microsoft365",
            "grant": "authorization_code",
            "token_type": "shared",
            "client_id": "x",
            "protocols": ["imap"],
        },
        from_page="/connections/new",
    )
    assert page.status_code == 400 and 'data-field="name"' in page.text
    page = team.admin.post(
        "/connections/new",
        {
            "name": "mixed",
            "provider": "microsoft365",
            "grant": "authorization_code",
            "token_type": "shared",
            "client_id": "x",
            "tenant": "t",
            "protocols": ["imap", "graph"],
        },
        from_page="/connections/new",
    )
    assert page.status_code == 400 and 'data-field="protocols"' in page.text and "one resource" in page.text


@on_both_databases
def test_twenty_runners_whose_token_expires_get_one_refresh_per_expiry_and_no_invalid_grant(
    team: Team, authorization_server: AuthorizationServerUnderTest
) -> None:
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    key = runner_key(team.server)
    before = authorization_server.count("refresh_token")
    for round_ in range(3):
        expire_now(team)  # every runner now finds it expired
        barrier = threading.Barrier(20)
        answers: list[requests.Response] = []

        def run(run_id: str, barrier: threading.Barrier = barrier, answers: list[requests.Response] = answers) -> None:
            barrier.wait()
            answers.append(token_for(team.server, key, "contoso-mail", run_id=run_id))

        threads = [threading.Thread(target=run, args=(f"run-{round_}-{index}",)) for index in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if not a.ok]
        assert len({a.json()["access_token"] for a in answers}) == 1  # all got the one refreshed token
        assert authorization_server.count("refresh_token") == before + round_ + 1
    assert "invalid_grant" not in team.server.log()
    # every token handed out is in the audit log once, under its run (the entries are group-committed)
    issued = team.server.sql("SELECT run_id FROM srv_audit WHERE action = 'token.issue' AND outcome = 'ok'")
    assert sorted(run for (run,) in issued) == sorted(f"run-{r}-{i}" for r in range(3) for i in range(20))
    ((used,),) = team.server.sql("SELECT last_used_at FROM srv_runner WHERE name = 'runner-1'")
    assert used is not None and used > time.time() - 300


def expire_now(team: Team) -> None:
    team.server.sql("UPDATE srv_token SET expires_at = expires_at - 3600")


def test_refresh_tokens_nobody_used_for_a_week_are_refreshed_by_the_keep_alive(
    server: ServerUnderTest, authorization_server: AuthorizationServerUnderTest
) -> None:
    """Microsoft drops a refresh token unused for 90 days: the service refreshes idle ones by itself."""
    server.environment["POSTROOM_SERVER_KEEPALIVE_SECONDS"] = "0.5"
    team = Team.start(server)
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    before = authorization_server.count("refresh_token")
    time.sleep(2)
    assert authorization_server.count("refresh_token") == before  # used recently: left alone
    server.sql("UPDATE srv_token SET signed_in_at = signed_in_at - 8 * 86400")
    deadline = time.monotonic() + 20
    while authorization_server.count("refresh_token") == before and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # a few more rounds: it was refreshed once, not at every round
    assert authorization_server.count("refresh_token") == before + 1
    assert "token.refresh" in team.admin.get("/audit?action=token.refresh").text


def test_a_refused_refresh_reads_needs_sign_in_and_a_new_sign_in_fixes_it(
    team: Team, authorization_server: AuthorizationServerUnderTest
) -> None:
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    key = runner_key(team.server)
    authorization_server.revoke_refresh_tokens(SIGNER)
    expire_now(team)
    refused = token_for(team.server, key, "contoso-mail")
    assert refused.status_code == 409 and refused.json()["status"] == "needs_sign_in"
    assert 'id="shared-status">Needs sign-in' in team.admin.get("/connections/contoso-mail").text
    _shared_sign_in(team, authorization_server)
    assert token_for(team.server, key, "contoso-mail").status_code == 200


@on_both_databases
def test_a_restart_of_the_server_during_a_run_costs_the_bot_nothing(
    team: Team, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot
) -> None:
    dovecot.add_user(SIGNER)
    dovecot.deliver(SIGNER, b"From: a@example.test\r\nSubject: during a restart\r\n\r\nbody\r\n")
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    key = runner_key(team.server)
    team.server.stop()
    restarter = threading.Timer(0.5, team.server.start)
    restarter.start()
    try:
        with managed_imap(dovecot, team.server, key) as session:  # asked while the server is down: retried
            assert "during a restart" in [mail.subject for mail in postroom.messages(session)]
    finally:
        restarter.join()
    assert team.server.starts == 2


def test_test_connection_logs_in_over_imap_and_names_missing_scopes(
    team: Team, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot
) -> None:
    dovecot.add_user(SIGNER)
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    form = {"protocol": "imap", "host": "localhost", "port": str(dovecot.ports["imaps"]), "mailbox": ""}
    page = team.admin.post("/connections/contoso-mail/test", form, from_page="/connections/contoso-mail")
    assert (
        'class="ok" role="status" id="test-outcome">logged in to localhost over IMAP as mailbot@example.test'
        in page.text
    )
    create_connection(team.admin, authorization_server, name="no-mail", scopes="https://outlook.office.com/User.Read")
    _shared_sign_in(team, authorization_server, "no-mail")
    page = team.admin.post("/connections/no-mail/test", form, from_page="/connections/no-mail")
    assert "the mail server refused the token" in page.text, page.text


def test_the_audit_log_is_append_only(team: Team) -> None:
    database = team.home / "data" / "server" / "server.sqlite3"
    with sqlite3.connect(database) as db:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE srv_audit SET detail = 'changed'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM srv_audit")


def test_no_canary_secret_shows_on_any_surface(
    team: Team, authorization_server: AuthorizationServerUnderTest, dovecot: Dovecot, tmp_path: Path
) -> None:
    """The client secret, the web password and the refresh tokens never show: not in the server's log, the
    audit log, any page, any API answer but the access token's, any error text or repr."""
    from tests.servers.oauth import SERVER_SECRET

    dovecot.add_user(SIGNER)
    create_connection(team.admin, authorization_server)
    _shared_sign_in(team, authorization_server)
    key = runner_key(team.server)
    answers = [token_for(team.server, key, "contoso-mail").text]
    expire_now(team)
    answers.append(token_for(team.server, key, "contoso-mail").text)  # after a refresh (a rotated refresh token)
    answers.append(token_for(team.server, key, "contoso-mail", user="x").text)
    authorization_server.revoke_refresh_tokens(SIGNER)
    expire_now(team)
    answers.append(token_for(team.server, key, "contoso-mail").text)  # a failed refresh's error
    test_form = {"protocol": "imap", "host": "localhost", "port": str(dovecot.ports["imaps"])}
    team.admin.post("/connections/contoso-mail/test", test_form, from_page="/connections/contoso-mail")  # its outcome
    for path in [
        "/connections",
        "/connections/contoso-mail",
        "/connections/contoso-mail/edit",
        "/audit",
        "/runners",
        "/users",
        "/my/connections",
    ]:
        team.admin.get(path)
    refresh_tokens = list(authorization_server.refresh_tokens)
    canaries = [SERVER_SECRET, ADMIN_PASSWORD, *refresh_tokens]
    assert len(refresh_tokens) >= 2
    from postroom.server.sealing import Sealer
    from postroom.server.settings import ServerSettings

    os.environ.setdefault("POSTROOM_HOME", str(team.home))
    reprs = [repr(Sealer.from_file(team.home / "data" / "server" / "server.key")), repr(ServerSettings())]
    with sqlite3.connect(team.home / "data" / "server" / "server.sqlite3") as db:
        audit_rows = [json.dumps(row) for row in db.execute("SELECT * FROM srv_audit")]
        stored = "\n".join(db.iterdump())
    surfaces = {
        "server log": team.server.log(),
        "pages": "\n".join(team.admin.seen),
        "API answers": "\n".join(answers),
        "audit": "\n".join(audit_rows),
        "reprs": "\n".join(reprs),
        "database": stored,  # sealed at rest: not even the database holds them in the clear
    }
    for surface, text in surfaces.items():
        for canary in canaries:
            assert canary not in text, f"a canary secret shows in the {surface}"
