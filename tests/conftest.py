"""Shared fixtures: an isolated postroom home, and real Dovecot servers started once per run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import postroom
from postroom import Basic, EmailServer, Variable
from postroom.credentials import sources
from tests.servers.dovecot import Dovecot
from tests.servers.ews import EwsServerUnderTest
from tests.servers.ews import ews_server as start_ews_server
from tests.servers.graph import GraphStandIn, graph_server
from tests.servers.oauth import AuthorizationServerUnderTest, oauth_server
from tests.servers.postgres import PostgresUnderTest, postgres_server
from tests.servers.rabbitmq import RabbitMqUnderTest, rabbitmq_server
from tests.servers.redis import RedisUnderTest, redis_server
from tests.servers.smtp import SmtpServerUnderTest, smtp_server

USER = "bot@example.test"
PASSWORD = "s3cret-Pa55"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own postroom home, no OS keyring and no vault key in the environment."""
    home = tmp_path / "postroom-home"
    monkeypatch.setenv("POSTROOM_HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.delenv("POSTROOM_VAULT_KEY", raising=False)
    sources._warned_fields.clear()
    yield home
    postroom.disconnect_all()


@pytest.fixture(scope="session")
def authorization_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthorizationServerUnderTest]:
    """A real OAuth2 authorization server (Authlib) on loopback, shared by the whole run."""
    with oauth_server(tmp_path_factory.mktemp("oauth")) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot(authorization_server: AuthorizationServerUnderTest) -> Iterator[Dovecot]:
    """A Dovecot with IMAP, IMAPS, POP3 and POP3S, shared by the whole run; OAuth2 tokens are
    checked with the authorization server (RFC 7662 introspection)."""
    server = Dovecot.start(
        users={USER: PASSWORD, "other@example.test": "0ther-Pa55"},
        oauth_introspection_url=authorization_server.introspection_url(),
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_without_tls() -> Iterator[Dovecot]:
    """A Dovecot with TLS switched off: it offers no STARTTLS."""
    server = Dovecot.start(tls=False, users={USER: PASSWORD})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_without_move() -> Iterator[Dovecot]:
    """A Dovecot that advertises neither MOVE nor UIDPLUS, like some older servers."""
    server = Dovecot.start(extra_config="protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ IDLE\n}\n")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_with_dots(dovecot: Dovecot) -> Iterator[Dovecot]:
    """A Dovecot whose hierarchy separator is ``.`` (``INBOX.Projects.Alpha``), as many servers have
    (with the shared one's certificate, so the suite's SMTP server and it share a CA)."""
    server = Dovecot.start(separator=".", certs=dovecot.certs)
    yield server
    server.stop()


PORT_NAMES = {
    ("imap", "ssl"): "imaps",
    ("imap", "starttls"): "imap",
    ("imap", "none"): "imap",
    ("pop3", "ssl"): "pop3s",
    ("pop3", "starttls"): "pop3",
    ("pop3", "none"): "pop3",
}


def server_config(server: Dovecot, protocol: str = "imap", security: str = "ssl", **changes: Any) -> EmailServer:
    """Settings for ``server`` as a user would write them: verified TLS, password from a variable."""
    options: dict[str, Any] = {
        "protocol": protocol,
        "host": "localhost",
        "port": server.ports[PORT_NAMES[(protocol, security)]],
        "security": security,
        "ca_file": server.certs.ca_file if server.certs else None,
        "auth": Basic(username=Variable("MAILBOX_USER"), password=Variable("MAILBOX_PASSWORD")),
        "connect_timeout": 5,
        "read_timeout": 5,
    }
    options.update(changes)
    return EmailServer(**options)


VARIABLES = {"MAILBOX_USER": USER, "MAILBOX_PASSWORD": PASSWORD}


@pytest.fixture
def mailbox_user(dovecot: Dovecot, request: pytest.FixtureRequest) -> str:
    """A fresh, empty mailbox on the shared Dovecot, for one test."""
    import hashlib

    user = "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12] + "@example.test"
    dovecot.add_user(user)
    return user


@pytest.fixture
def imap(dovecot: Dovecot, mailbox_user: str) -> postroom.Session:
    """An open IMAP session named "t" on the test's own mailbox."""
    return postroom.connect(
        "t", server_config(dovecot), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    )


@pytest.fixture
def pop3(dovecot: Dovecot, mailbox_user: str) -> postroom.Session:
    """An open POP3 session named "p" on the test's own mailbox."""
    return postroom.connect(
        "p", server_config(dovecot, "pop3"), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    )


@pytest.fixture(scope="session")
def smtp(dovecot: Dovecot, authorization_server: AuthorizationServerUnderTest) -> Iterator[SmtpServerUnderTest]:
    """A real SMTP server (aiosmtpd, STARTTLS + AUTH incl. XOAUTH2/OAUTHBEARER) delivering into the
    shared Dovecot via LMTP."""
    with smtp_server(dovecot, introspect=authorization_server.introspect) as server:
        yield server


@pytest.fixture
def bot_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """The password the bot files of tests/bots.py read from the environment (``env:BOT_PASSWORD``)."""
    from tests.bots import PASSWORD_ENV

    for name, value in PASSWORD_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresUnderTest]:
    """A real PostgreSQL (Debian's), its own cluster under a temp dir on a free port, for the whole run."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def redis() -> Iterator[RedisUnderTest]:
    """A real Redis (Debian's redis-server) on a free port, for one test."""
    with redis_server() as server:
        yield server


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMqUnderTest]:
    """A real RabbitMQ (Debian's rabbitmq-server), a node of its own on free ports, for one test."""
    with rabbitmq_server() as server:
        yield server


@pytest.fixture(scope="session")
def ews_standin(
    tmp_path_factory: pytest.TempPathFactory, authorization_server: AuthorizationServerUnderTest
) -> Iterator[EwsServerUnderTest]:
    """The EWS stand-in (a protocol-level stand-in, not Exchange), checking tokens with the test authorization server."""
    with start_ews_server(
        tmp_path_factory.mktemp("ews"), {"bot@example.test": PASSWORD}, authorization_server.introspect
    ) as server:
        yield server


@pytest.fixture
def ews_server(ews_standin: EwsServerUnderTest) -> EwsServerUnderTest:
    """The EWS stand-in with an empty mailbox for this test."""
    ews_standin.clear()
    ews_standin.busy = 0
    ews_standin.users.clear()
    ews_standin.users["bot@example.test"] = PASSWORD
    return ews_standin


@pytest.fixture(scope="session")
def graph_standin(
    tmp_path_factory: pytest.TempPathFactory, authorization_server: AuthorizationServerUnderTest
) -> Iterator[GraphStandIn]:
    """The Microsoft Graph stand-in (a loopback server speaking Graph's wire format, not Microsoft Graph)."""
    with graph_server(tmp_path_factory.mktemp("graph"), authorization_server.introspect) as server:
        yield server


@pytest.fixture
def graph(graph_standin: GraphStandIn) -> GraphStandIn:
    """The Graph stand-in with no mailboxes, grants or knobs left from another test."""
    graph_standin.reset()
    return graph_standin
