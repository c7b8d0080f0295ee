"""Connect and Test connection against a real Dovecot: every transport, every error a user meets."""

from __future__ import annotations

import logging
import threading
import warnings

import pytest

import postroom
from postroom import (
    AuthenticationError,
    Basic,
    CertificateError,
    ServerTimeoutError,
    ServerUnreachableError,
    SessionExistsError,
    SessionNotFoundError,
    StartTLSError,
    TLSError,
    Variable,
)
from tests.conftest import USER, VARIABLES, server_config
from tests.servers.dovecot import Dovecot, free_port
from tests.servers.silent import silent_server

TRANSPORTS = [("imap", "ssl"), ("imap", "starttls"), ("pop3", "ssl"), ("pop3", "starttls")]


@pytest.mark.parametrize(("protocol", "security"), TRANSPORTS)
def test_test_connection_over_each_transport(dovecot: Dovecot, protocol: str, security: str) -> None:
    result = postroom.test_connection(server_config(dovecot, protocol, security), variables=VARIABLES)
    assert (result.username, result.username_source) == (USER, "var:MAILBOX_USER")
    report = result.report
    assert report.protocol == protocol
    assert report.tls_version in {"TLSv1.2", "TLSv1.3"}
    assert report.cipher
    assert result.round_trip_ms >= 0
    if protocol == "imap":
        assert {"IDLE", "MOVE", "UIDPLUS", "CONDSTORE"} <= set(report.capabilities)  # post-login capabilities
        assert report.folder_count is not None and report.folder_count >= 1
        assert report.message_count is None
    else:
        assert "UIDL" in report.capabilities
        assert report.message_count is not None
        assert report.folder_count is None


def test_pop3_reports_the_message_count(dovecot: Dovecot) -> None:
    user = "other@example.test"
    before = postroom.test_connection(
        server_config(dovecot, "pop3", "ssl"), variables={"MAILBOX_USER": user, "MAILBOX_PASSWORD": "0ther-Pa55"}
    ).report.message_count
    dovecot.deliver(user, b"From: a@example.test\r\nSubject: count me\r\n\r\nhello\r\n")
    after = postroom.test_connection(
        server_config(dovecot, "pop3", "ssl"), variables={"MAILBOX_USER": user, "MAILBOX_PASSWORD": "0ther-Pa55"}
    ).report.message_count
    assert after == (before or 0) + 1


@pytest.mark.parametrize(("protocol", "security"), TRANSPORTS)
def test_wrong_password_is_an_authentication_error_with_the_server_reply(
    dovecot: Dovecot, protocol: str, security: str
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        postroom.connect(
            "bad",
            server_config(dovecot, protocol, security),
            variables={"MAILBOX_USER": USER, "MAILBOX_PASSWORD": "wrong-canary-pw"},
        )
    message = str(caught.value)
    assert message.startswith("session 'bad' ")
    assert "login refused" in message and "Authentication failed" in message
    assert "wrong-canary-pw" not in message
    assert postroom.open_sessions() == []


def test_connection_refused(dovecot: Dovecot) -> None:
    config = server_config(dovecot, port=free_port())
    with pytest.raises(ServerUnreachableError, match=r"connection refused on port \d+ — check that the server"):
        postroom.connect("c", config, variables=VARIABLES)


def test_unknown_host(dovecot: Dovecot) -> None:
    config = server_config(dovecot, host="no-such-host.invalid")
    with pytest.raises(ServerUnreachableError, match="cannot resolve the host name 'no-such-host.invalid'"):
        postroom.connect("c", config, variables=VARIABLES)


@pytest.mark.parametrize(
    ("security", "expected"), [("starttls", "no greeting"), ("ssl", "TLS handshake got no answer")]
)
def test_server_that_accepts_and_never_answers_times_out(dovecot: Dovecot, security: str, expected: str) -> None:
    with silent_server() as port:
        config = server_config(dovecot, port=port, security=security, connect_timeout=0.5, read_timeout=0.5)
        with pytest.raises(ServerTimeoutError, match=expected):
            postroom.connect("c", config, variables=VARIABLES)


def test_untrusted_certificate_fails_verification(dovecot: Dovecot) -> None:
    config = server_config(dovecot, ca_file=None)
    with pytest.raises(CertificateError, match="not trusted.*ca_file="):
        postroom.connect("c", config, variables=VARIABLES)


def test_certificate_for_another_host_name(dovecot: Dovecot) -> None:
    config = server_config(dovecot, host="127.0.0.1")  # the certificate names only "localhost"
    with pytest.raises(CertificateError, match="not valid for '127.0.0.1'.*connect with a host name listed in the"):
        postroom.connect("c", config, variables=VARIABLES)


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_starttls_not_offered_is_an_error_never_a_downgrade(dovecot_without_tls: Dovecot, protocol: str) -> None:
    config = server_config(dovecot_without_tls, protocol, "starttls", ca_file=None)
    with pytest.raises(StartTLSError, match="does not offer (STARTTLS|STLS).*never falls back"):
        postroom.connect("c", config, variables=VARIABLES)


def test_starttls_with_an_untrusted_certificate_fails(dovecot: Dovecot) -> None:
    with pytest.raises(CertificateError):
        postroom.connect("c", server_config(dovecot, "imap", "starttls", ca_file=None), variables=VARIABLES)


def test_implicit_tls_against_a_plaintext_port_says_to_use_starttls(dovecot: Dovecot) -> None:
    config = server_config(dovecot, port=dovecot.ports["imap"], security="ssl")
    with pytest.raises(TLSError, match="security='starttls'"):
        postroom.connect("c", config, variables=VARIABLES)


def test_plaintext_works_only_when_asked(dovecot_without_tls: Dovecot) -> None:
    with pytest.warns(postroom.PlaintextWarning):
        config = server_config(dovecot_without_tls, "imap", "none", port=dovecot_without_tls.ports["imap"])
    result = postroom.test_connection(config, variables=VARIABLES)
    assert result.report.tls_version is None


# -- sessions ---------------------------------------------------------------------------------


def test_named_session_lifecycle(dovecot: Dovecot) -> None:
    session = postroom.connect("invoices", server_config(dovecot), variables=VARIABLES)
    assert postroom.get_session("invoices") is session
    assert postroom.open_sessions() == ["invoices"]
    with pytest.raises(SessionExistsError, match="replace=True"):
        postroom.connect("invoices", server_config(dovecot), variables=VARIABLES)
    replacement = postroom.connect("invoices", server_config(dovecot), variables=VARIABLES, replace=True)
    assert postroom.get_session("invoices") is replacement
    assert session.state == "closed"
    postroom.disconnect("invoices")
    with pytest.raises(SessionNotFoundError, match=r"no open session named 'invoices' \(open sessions: none\)"):
        postroom.get_session("invoices")


def test_unknown_session_lists_the_open_ones(dovecot: Dovecot) -> None:
    postroom.connect("alerts", server_config(dovecot), variables=VARIABLES)
    postroom.connect("tickets", server_config(dovecot, "pop3"), variables=VARIABLES)
    with pytest.raises(SessionNotFoundError, match=r"open sessions: 'alerts', 'tickets'"):
        postroom.get_session("invoices")


def test_session_as_context_manager(dovecot: Dovecot) -> None:
    with postroom.connect("ctx", server_config(dovecot), variables=VARIABLES) as session:
        session.call(lambda mailbox: mailbox.noop())
        assert postroom.open_sessions() == ["ctx"]
    assert postroom.open_sessions() == []
    assert session.state == "closed"


def test_registry_is_thread_safe(dovecot: Dovecot) -> None:
    errors: list[BaseException] = []
    session = postroom.connect("shared", server_config(dovecot), variables=VARIABLES)

    def work(index: int) -> None:
        try:
            for _ in range(5):
                postroom.get_session("shared").call(lambda mailbox: mailbox.noop())
            postroom.connect(f"own-{index}", server_config(dovecot, "pop3"), variables=VARIABLES)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert postroom.open_sessions() == sorted(["shared", *(f"own-{i}" for i in range(6))])
    assert session.reconnects == 0


def test_only_one_of_two_racing_connects_under_one_name_wins(dovecot: Dovecot) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def race() -> None:
        barrier.wait()
        try:
            postroom.connect("race", server_config(dovecot), variables=VARIABLES)
            outcomes.append("won")
        except SessionExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["exists", "won"]


@pytest.mark.parametrize("protocol", ["imap", "pop3"])
def test_dropped_connection_reconnects_once_and_logs_it(
    dovecot: Dovecot, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    user = "other@example.test"
    variables = {"MAILBOX_USER": user, "MAILBOX_PASSWORD": "0ther-Pa55"}
    session = postroom.connect("kicked", server_config(dovecot, protocol), variables=variables)
    dovecot.kick(user)  # the server drops the connection, as an idle timeout would
    with caplog.at_level(logging.INFO, logger="postroom"):
        session.call(lambda mailbox: mailbox.noop())
    assert session.reconnects == 1
    assert "reconnecting" in caplog.text and "reconnected" in caplog.text


def test_canary_password_never_leaks(dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    canary = "Canary-Leak-Check-51e2"
    config = server_config(dovecot, auth=Basic(username=Variable("U"), password=Variable("P")))
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for variables in ({"U": USER, "P": canary}, {"U": canary, "P": "not-the-password"}):
            with pytest.raises(AuthenticationError) as caught:
                postroom.connect("leak", config, variables=variables)
            texts += [str(caught.value), repr(caught.value), str(caught.value.to_dict())]
            cause = caught.value.__cause__
            texts.append(repr(cause))
    texts += [caplog.text, repr(config)]
    for text in texts:
        assert canary not in text


def test_warnings_are_not_errors_for_vault_and_variables(dovecot: Dovecot) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        postroom.test_connection(server_config(dovecot), variables=VARIABLES)
