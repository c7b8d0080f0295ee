"""*Test connection* for a managed connection: the real protocol, logged in with the token the service holds.

A token endpoint that answers 200 proves little: this logs in exactly as a bot would — IMAP or POP3
AUTHENTICATE, SMTP AUTH, an EWS or a Microsoft Graph call — and on a refusal names what is missing:
the scopes the connection needs that the sign-in did not grant, or the consent to give.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from postroom.actions.test_connection import test_connection
from postroom.auth.base import TokenLogin, check_wire_safe
from postroom.config import EmailServer, Ews, Outlook
from postroom.config.smtp_server import SmtpServer
from postroom.credentials import ResolveContext, Secret
from postroom.errors import AuthenticationError, ConfigError, PostroomError
from postroom.server.connections import PROTOCOLS, StoredConnection
from postroom.server.tokens import Tokens
from postroom.transports.smtp import check_submission

__all__ = ["SECURITIES", "ServiceTokenSource", "TestOutcome", "TestTarget", "run_test"]

#: How a test reaches an IMAP, POP3 or SMTP server: as the provider publishes (else TLS), TLS from the
#: first byte, or STARTTLS.
SECURITIES = {"": "The provider's (else TLS)", "ssl": "TLS", "starttls": "STARTTLS"}


class ServiceTokenSource:
    """A :class:`~postroom.auth.base.TokenSource` backed by the service's own token store."""

    def __init__(self, tokens: Tokens, connection: StoredConnection, principal: str) -> None:
        self._tokens, self._connection, self._principal = tokens, connection, principal
        self._subject: str | None = None
        self.renewed_by_server = False

    def access_token(self) -> Secret:
        issued = self._tokens.access_token(self._connection, self._principal)
        self._subject = issued.subject
        return issued.access_token

    def renew(self, rejected: Secret) -> Secret:
        issued = self._tokens.access_token(self._connection, self._principal, force=True)
        self.renewed_by_server = True
        return issued.access_token

    @property
    def account(self) -> str | None:
        return self._subject

    @property
    def scopes(self) -> tuple[str, ...]:
        return ()


class _ServiceAuth:
    """The auth mode of a test: the service's token, logging in as the mailbox named."""

    kind = "managed"

    def __init__(self, source: ServiceTokenSource, username: str) -> None:
        self._source, self._username = source, username

    def login(self) -> TokenLogin:
        return TokenLogin(check_wire_safe(Secret(self._username, scrub=False), "mailbox"), self._source)

    def resolve(self, context: ResolveContext) -> TokenLogin:
        return self.login()

    def for_server(self, provider: str | None, azure_cloud: str, *, service: str = "mail") -> _ServiceAuth:
        return self  # the connection already knows its provider and scopes

    def describe(self) -> dict[str, str]:
        return {"mode": self.kind, "username": self._username}

    def to_profile(self) -> dict[str, str]:
        raise ConfigError("auth", "a test's auth is not stored")


@dataclass(frozen=True)
class TestTarget:
    """What the *Test connection* form names: the protocol, where its server is, and whose mailbox.

    ``host`` is a host name (IMAP, POP3, SMTP), a host or the EWS URL (EWS), or Graph's base URL (Graph;
    empty: the connection's cloud). ``port`` empty is the protocol's port for ``security``. ``mailbox``
    empty is the signed-in user's.
    """

    protocol: str
    host: str = ""
    port: int | None = None
    security: str = ""
    mailbox: str = ""

    __test__ = False  # not a pytest test class

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError("protocol", f"{self.protocol!r} is not a protocol", hint=", ".join(PROTOCOLS))
        if self.security not in SECURITIES:
            raise ConfigError(
                "security", f"{self.security!r} is not TLS or STARTTLS", hint="choose TLS or STARTTLS, or leave it"
            )


@dataclass(frozen=True)
class TestOutcome:
    ok: bool
    summary: str
    detail: dict[str, Any]

    __test__ = False  # not a pytest test class


def run_test(
    tokens: Tokens,
    connection: StoredConnection,
    principal: str,
    target: TestTarget,
    *,
    ca_file: str | None,
    granted_scopes: tuple[str, ...],
) -> TestOutcome:
    """Log in over ``target.protocol`` with the token of (``connection``, ``principal``); never raises for
    what the mail server or the identity provider answers — the outcome says it, with the advice."""
    if target.protocol not in connection.spec.protocols:
        raise ConfigError(
            "protocol",
            f"{connection.name} is not set up for {PROTOCOLS[target.protocol]}",
            hint="add the protocol to the connection (its scopes come with it), sign in again, then test",
        )
    source = ServiceTokenSource(tokens, connection, principal)
    try:
        username = target.mailbox.strip() or _subject(source)
        if not username:
            raise ConfigError("mailbox", "the token does not say which mailbox it is for", hint="give its address")
        auth = _ServiceAuth(source, username)
        published = connection.endpoint_for(target.protocol)
        host = target.host.strip() or (published.host if published else "")
        security = target.security or (published.security if published and not target.host.strip() else "ssl")
        target = dataclasses.replace(target, security=security)
        if target.protocol == "smtp":
            return _smtp_test(target, host, auth, ca_file)
        config: EmailServer | Ews | Outlook
        if target.protocol == "ews":
            place = {"url": host} if "://" in host else {"host": _required_host(host, "the EWS URL or host")}
            config = Ews(auth=auth, ca_file=ca_file, connect_timeout=15, **place)  # type: ignore[arg-type]
        elif target.protocol == "graph":
            graph_url = host if "://" in host else (f"https://{host}" if host else None)
            config = Outlook(
                auth=auth,
                mailbox=target.mailbox.strip() or "me",
                azure_cloud=connection.spec.cloud,  # type: ignore[arg-type]
                graph_url=graph_url,
                ca_file=ca_file,
                connect_timeout=15,
            )
        else:
            config = EmailServer(
                host=_required_host(host, "the mail server's host name"),
                protocol=target.protocol,  # type: ignore[arg-type]
                port=target.port,
                security=target.security,  # type: ignore[arg-type]
                ca_file=ca_file,
                connect_timeout=15,
                auth=auth,
            )
        found = test_connection(config, name=f"test-{connection.name}")
    except AuthenticationError as refused:
        return _refused(connection, refused, granted_scopes)
    except PostroomError as failed:
        return TestOutcome(False, str(failed), {"advice": failed.hint or ""})
    where = found.report.address if found.report.https else host
    return TestOutcome(
        True,
        f"logged in to {where} over {PROTOCOLS[target.protocol]} as {found.username}",
        {"capabilities": list(found.report.capabilities), "round_trip_ms": found.round_trip_ms},
    )


def _smtp_test(target: TestTarget, host: str, auth: _ServiceAuth, ca_file: str | None) -> TestOutcome:
    """SMTP AUTH as sending would (TLS or STARTTLS first), sending nothing."""
    server = SmtpServer(
        host=_required_host(host, "the SMTP server's host name"),
        port=target.port,
        security=target.security,  # type: ignore[arg-type]
        auth=auth,
        ca_file=ca_file,
        connect_timeout=15,
    )
    login = auth.login()
    check = check_submission(server, login)
    return TestOutcome(
        True,
        f"logged in to {host} over SMTP as {login.username.reveal()}",
        {"capabilities": list(check.extensions), "tls": check.tls_version or ""},
    )


def _required_host(host: str, what: str) -> str:
    if not host:
        raise ConfigError("host", "is required for this provider", hint=f"give {what}")
    return host


def _refused(connection: StoredConnection, refused: AuthenticationError, granted: tuple[str, ...]) -> TestOutcome:
    """The server refused the token: name the scopes the sign-in did not grant, or what else to check."""
    spec = connection.spec
    if spec.grant == "client_credentials":
        advice = (
            "the app's token carries its application permissions: give the app the mail permission for this "
            "protocol with admin consent (Exchange: and access to this mailbox), then test again"
        )
        return TestOutcome(False, f"the mail server refused the token: {refused}", {"advice": advice, "missing": []})
    # what postroom asks for by default for these protocols, against what the provider said it granted
    needed = dataclasses.replace(spec, scopes=()).endpoints().delegated_scopes
    missing = [scope for scope in needed if granted and scope not in granted]
    advice = (
        f"the sign-in did not grant {', '.join(missing)}: add them to the app registration (and the connection's "
        "scopes), grant consent, and sign in again"
        if missing
        else "check that the app has the mail permissions with consent, and that this user may open the mailbox"
    )
    return TestOutcome(False, f"the mail server refused the token: {refused}", {"advice": advice, "missing": missing})


def _subject(source: ServiceTokenSource) -> str:
    """Whom the token is for (the first token carries it)."""
    source.access_token()
    return source.account or ""
