"""A managed token works for every protocol postroom speaks: IMAP and POP3 (Dovecot), SMTP (the test SMTP
server), EWS (the EWS stand-in) and Outlook through Graph (the Graph stand-in, a wire-format stand-in for
Microsoft Graph) — each connection asking for the scopes its protocols need."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import postroom
from postroom import EmailServer, Managed, Variable
from tests.server_flows import Team, create_connection, runner_key
from tests.servers.dovecot import Dovecot
from tests.servers.ews import EwsServerUnderTest
from tests.servers.graph import GraphStandIn
from tests.servers.oauth import AuthorizationServerUnderTest
from tests.servers.postroom_server import ServerUnderTest
from tests.servers.smtp import SmtpServerUnderTest
from tests.test_ews import ews_config
from tests.test_outlook import outlook

USER = "bot@example.test"  # the EWS and Graph stand-ins' mailbox, and who signs in


@pytest.fixture
def team(
    tmp_path: Path,
    authorization_server: AuthorizationServerUnderTest,
    dovecot: Dovecot,
    ews_standin: EwsServerUnderTest,
    graph_standin: GraphStandIn,
) -> Iterator[Team]:
    """The server, trusting the identity provider and every mail server here (its Test connection logs in)."""
    assert dovecot.certs is not None  # the SMTP server shares Dovecot's certificate
    authorities = (authorization_server.ca_file, dovecot.certs.ca_file, ews_standin.ca_file, graph_standin.ca_file)
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_bytes(b"".join(Path(ca).read_bytes() for ca in authorities))
    server = ServerUnderTest(home=tmp_path / "home", ca_file=bundle)
    try:
        yield Team.start(server)
    finally:
        server.stop()


def _signed_in(team: Team, oauth: AuthorizationServerUnderTest, name: str, protocols: tuple[str, ...]) -> str:
    create_connection(team.admin, oauth, name=name, protocols=protocols)
    start = team.admin.post(f"/connections/{name}/sign-in", from_page=f"/connections/{name}", follow=False)
    back = team.admin.sign_in_at_provider(start, oauth, USER)
    assert 'id="shared-status">Active' in back.text, back.text
    return runner_key(team.server, f"runner-{name}")


def _managed(team: Team, name: str) -> Managed:
    return Managed(name, server=team.server.url, runner_key=Variable("RUNNER_KEY"))


def _tested(team: Team, name: str, **form: str) -> str:
    """Run the connection page's Test connection with ``form``: the outcome and its advice, or the form's error."""
    page = team.admin.post(f"/connections/{name}/test", form, from_page=f"/connections/{name}")
    outcome = re.search(r'id="test-outcome">([^<]*)</p>(?:\s*<p id="test-advice">([^<]*)</p>)?', page.text)
    if outcome is None:
        outcome = re.search(r'<p class="error" role="alert">([^<]*)</p>', page.text)
    assert outcome is not None, page.text
    return html.unescape(" | ".join(part for part in outcome.groups() if part))


def test_pop3_and_smtp_log_in_with_the_managed_token(
    team: Team,
    authorization_server: AuthorizationServerUnderTest,
    dovecot: Dovecot,
    smtp: SmtpServerUnderTest,
) -> None:
    key = _signed_in(team, authorization_server, "mail", ("imap", "pop3", "smtp"))
    dovecot.add_user(USER)
    subject = f"to be popped {team.server.port}"
    dovecot.deliver(USER, f"From: a@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    assert dovecot.certs is not None
    config = EmailServer(
        protocol="pop3",
        host="localhost",
        port=dovecot.ports["pop3s"],
        ca_file=dovecot.certs.ca_file,
        smtp_host="localhost",
        smtp_port=smtp.ssl_port,
        smtp_security="ssl",
        connect_timeout=5,
        auth=_managed(team, "mail"),
    )
    with postroom.connect("pop-managed", config, variables={"RUNNER_KEY": key}) as session:
        assert subject in [mail.subject for mail in postroom.messages(session)]
        sent = postroom.send(session, to="someone@example.test", subject="sent with a managed token", body="hi")
    assert sent.message_id
    assert any(b"sent with a managed token" in raw for _sender, _to, raw in smtp.received)
    # Test connection, run by the server with its own copy of the token: POP3 AUTH, and SMTP AUTH over
    # STARTTLS and over TLS, each as a bot would; nothing is sent
    sent_before = len(smtp.received)
    pop3 = _tested(team, "mail", protocol="pop3", host="localhost", port=str(dovecot.ports["pop3s"]))
    assert pop3 == f"logged in to localhost over POP3 as {USER}"
    for security, port in (("starttls", smtp.starttls_port), ("ssl", smtp.ssl_port)):
        found = _tested(team, "mail", protocol="smtp", host="localhost", port=str(port), security=security)
        assert found == f"logged in to localhost over SMTP as {USER}"
    assert len(smtp.received) == sent_before
    refused = _tested(team, "mail", protocol="smtp", host="localhost", port=str(smtp.ssl_port), mailbox="x@y.test")
    assert refused.startswith("the mail server refused the token"), refused
    assert "this user may open the mailbox" in refused


def test_ews_and_graph_take_the_managed_token_with_their_own_scopes(
    team: Team,
    authorization_server: AuthorizationServerUnderTest,
    ews_server: EwsServerUnderTest,
    graph: GraphStandIn,
) -> None:
    from tests.test_ews import mail as ews_mail
    from tests.test_outlook import mail as graph_mail

    ews_key = _signed_in(team, authorization_server, "exchange", ("ews",))
    graph_key = _signed_in(team, authorization_server, "graph", ("graph",))
    ews_server.deliver(ews_mail("over EWS"))
    graph.deliver(USER, graph_mail("over Graph"))
    with postroom.connect(
        "ews-managed", ews_config(ews_server, auth=_managed(team, "exchange")), variables={"RUNNER_KEY": ews_key}
    ) as session:
        assert [m.subject for m in postroom.messages(session)] == ["over EWS"]
    assert set(ews_server.schemes) == {"Bearer"}
    config = outlook(graph, authorization_server, mailbox="me", auth=_managed(team, "graph"))
    with postroom.connect("graph-managed", config, variables={"RUNNER_KEY": graph_key}) as session:
        assert [m.subject for m in postroom.messages(session)] == ["over Graph"]
    scopes = {t.scope for t in authorization_server.tokens.values() if t.user == USER}
    assert any("EWS.AccessAsUser.All" in s for s in scopes) and any("graph.microsoft.com/Mail" in s for s in scopes)
    # Test connection runs the real call with the server's token: an EWS request, a Graph request
    assert (
        _tested(team, "exchange", protocol="ews", host=ews_server.url)
        == f"logged in to {ews_server.url} over EWS as {USER}"
    )
    found = _tested(team, "graph", protocol="graph", host=graph.url)
    assert found.startswith(f"logged in to {graph.url}") and found.endswith(f"over Outlook (Graph) as {USER}"), found
    # a sign-in that did not grant Graph's mail scopes: the refusal names them
    create_connection(
        team.admin,
        authorization_server,
        name="no-mail",
        protocols=("graph",),
        scopes="https://graph.microsoft.com/User.Read",
    )
    start = team.admin.post("/connections/no-mail/sign-in", from_page="/connections/no-mail", follow=False)
    team.admin.sign_in_at_provider(start, authorization_server, USER)
    refused = _tested(team, "no-mail", protocol="graph", host=graph.url)
    assert refused.startswith("the mail server refused the token"), refused
    assert "did not grant https://graph.microsoft.com/Mail.ReadWrite" in refused, refused
    # a protocol the connection was not set up for is named, with what to do
    assert "is not set up for EWS" in _tested(team, "graph", protocol="ews", host=ews_server.url)
