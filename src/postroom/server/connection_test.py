"""*Test connection* for a managed connection: the real protocol, logged in with the token the service holds.

A token endpoint that answers 200 proves little: this logs in to the mail server (IMAP or POP3
AUTHENTICATE, SMTP AUTH) exactly as a bot would, and on a refusal names what is missing — the
scopes the connection needs that the sign-in did not grant, or the consent to give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postroom.actions.test_connection import test_connection
from postroom.auth.base import TokenLogin, check_wire_safe
from postroom.config import EmailServer
from postroom.credentials import ResolveContext, Secret
from postroom.errors import AuthenticationError, ConfigError, PostroomError
from postroom.server.connections import StoredConnection
from postroom.server.tokens import Tokens

__all__ = ["ServiceTokenSource", "TestOutcome", "run_test"]


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
    """The auth mode of a test: the service's token for the mailbox named."""

    kind = "managed"

    def __init__(self, source: ServiceTokenSource, username: str) -> None:
        self._source, self._username = source, username

    def resolve(self, context: ResolveContext) -> TokenLogin:
        return TokenLogin(check_wire_safe(Secret(self._username, scrub=False), "username"), self._source)

    def describe(self) -> dict[str, str]:
        return {"mode": self.kind, "username": self._username}

    def to_profile(self) -> dict[str, str]:
        raise ConfigError("auth", "a test's auth is not stored")


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
    *,
    protocol: str,
    host: str,
    port: int | None,
    mailbox: str,
    ca_file: str | None,
    granted_scopes: tuple[str, ...],
) -> TestOutcome:
    if protocol not in {"imap", "pop3"}:
        raise ConfigError(
            "protocol", f"Test connection runs IMAP or POP3 here, not {protocol}", hint="choose IMAP or POP3"
        )
    source = ServiceTokenSource(tokens, connection, principal)
    try:
        username = mailbox.strip() or (tokens_subject(source) or "")
        if not username:
            raise ConfigError(
                "mailbox", "the token does not say which mailbox it is for", hint="give the mailbox address"
            )
        config = EmailServer(
            host=host.strip(),
            protocol=protocol,  # type: ignore[arg-type]
            port=port,
            ca_file=ca_file,
            connect_timeout=15,
            auth=_ServiceAuth(source, username),
        )
        found = test_connection(config, name=f"test-{connection.name}")
    except AuthenticationError as refused:
        needed = set(connection.spec.endpoints().delegated_scopes)
        missing = sorted(needed - set(granted_scopes)) if granted_scopes else []
        advice = (
            f"the sign-in did not grant {', '.join(missing)}: add them to the app registration, grant consent, "
            "and sign in again"
            if missing
            else "check that the app has the mail permissions with consent, and that this user may open the mailbox"
        )
        return TestOutcome(
            False, f"the mail server refused the token: {refused}", {"advice": advice, "missing": missing}
        )
    except PostroomError as failed:
        return TestOutcome(False, str(failed), {"advice": failed.hint or ""})
    report = found.to_dict()
    return TestOutcome(
        True,
        f"logged in to {host} over {protocol.upper()} as {found.username}",
        {"capabilities": report.get("capabilities", []), "round_trip_ms": found.round_trip_ms},
    )


def tokens_subject(source: ServiceTokenSource) -> str | None:
    source.access_token()
    return source.account
