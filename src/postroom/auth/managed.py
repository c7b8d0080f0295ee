"""``Managed``: OAuth2 tokens from a ``postroom server``, for runners that must hold no credentials.

The runner holds only its runner key. At connect time it asks the server for an access token for the
named connection — the shared token, or the one of the user the run belongs to — and keeps it in
memory for the run. The server refreshes (the runner never sees a refresh token). When the mail
server refuses a token mid-run, the session asks the server again, saying which token was refused,
so the server refreshes once however many runners report it.

>>> from postroom import Variable
>>> Managed("contoso-mail", server="https://postroom.example.com", runner_key=Variable("RUNNER_KEY"))
Managed(connection='contoso-mail', token='shared', server='https://postroom.example.com', runner_key=var:RUNNER_KEY)
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from typing import Any, Literal
from urllib.parse import quote

from postroom.auth.base import TokenLogin, check_wire_safe
from postroom.credentials import ResolveContext, Secret, SecretRef, Variable, as_secret_ref
from postroom.credentials.refs import format_ref, parse_ref
from postroom.credentials.server_api import ask_server, checked_server_url
from postroom.errors import (
    ConfigError,
    ConsentRequiredError,
    CredentialError,
    OAuthError,
)
from postroom.extras import require_extra
from postroom.logs import get_logger

__all__ = ["Managed", "ManagedTokenSource"]

_log = get_logger("postroom.auth")
TokenKind = Literal["shared", "user"]


class Managed:
    """Log in with a token held by a ``postroom server`` connection (shared, or the run's user's)."""

    kind = "managed"

    def __init__(
        self,
        connection: str,
        *,
        token: TokenKind = "shared",
        server: str | None = None,
        runner_key: SecretRef | str | None = None,
        user: str | None = None,
        username: SecretRef | str | None = None,
        run_id: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        if token not in ("shared", "user"):
            raise ConfigError("token", f"{token!r} is neither 'shared' nor 'user'", hint="token='shared' or 'user'")
        if not connection or "/" in connection:
            raise ConfigError("connection", f"{connection!r} is not a connection name", hint="as the server shows it")
        self.connection = connection
        self.token: TokenKind = token
        self.server = checked_server_url(server or os.environ.get("POSTROOM_SERVER_URL", ""))
        self.runner_key: SecretRef = as_secret_ref(
            runner_key if runner_key is not None else Variable("POSTROOM_RUNNER_KEY"), "runner_key"
        )
        if token == "user" and not user:
            user = os.environ.get("POSTROOM_RUN_USER") or None
        if token == "user" and not user:
            raise ConfigError(
                "user",
                "a user-specific token needs the user the run belongs to",
                hint="give user= (their postroom server user name) or set POSTROOM_RUN_USER",
            )
        self.user = user
        self.username: SecretRef | None = as_secret_ref(username, "username") if username is not None else None
        self.run_id = run_id or os.environ.get("POSTROOM_RUN_ID") or None
        self.ca_file = ca_file
        require_extra("managed", "tokens from a postroom server")

    def for_server(self, provider: str | None, azure_cloud: str, *, service: str = "mail") -> Managed:
        return self  # the server's connection knows its provider and scopes

    def resolve(self, context: ResolveContext) -> TokenLogin:
        key = check_wire_safe(self.runner_key.resolve(context, "runner_key"), "runner_key")
        source = ManagedTokenSource(self, key, run_id=self.run_id or f"run-{uuid.uuid4().hex[:12]}")
        if self.username is not None:
            user = self.username.resolve(context, "username").reveal()
        else:
            source.access_token()  # the subject comes with the first token
            user = source.account or ""
        if not user:
            raise CredentialError(
                "username: the server's connection did not say which mailbox its token is for",
                hint="give username= (the mailbox address)",
            )
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in user):
            raise CredentialError("username: contains a control character", hint="give the plain mailbox address")
        return TokenLogin(username=check_wire_safe(Secret(user, scrub=False), "username"), tokens=source)

    def describe(self) -> dict[str, str]:
        described = {"mode": self.kind, "connection": self.connection, "token": self.token, "server": self.server}
        described["runner_key"] = self.runner_key.describe()
        if self.user:
            described["user"] = self.user
        if self.username is not None:
            described["username"] = self.username.describe()
        if self.ca_file:
            described["ca_file"] = self.ca_file
        return described

    def to_profile(self) -> dict[str, str]:
        record = self.describe()
        record["runner_key"] = format_ref(self.runner_key, "runner_key")
        if self.username is not None:
            record["username"] = format_ref(self.username, "username")
        return record

    @classmethod
    def from_profile(cls, record: dict[str, str]) -> Managed:
        return cls(
            record["connection"],
            token=record.get("token", "shared"),  # type: ignore[arg-type]
            server=record.get("server"),
            runner_key=parse_ref(record["runner_key"], "runner_key") if "runner_key" in record else None,
            user=record.get("user"),
            username=parse_ref(record["username"], "username") if "username" in record else None,
            ca_file=record.get("ca_file"),
        )

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.describe().items() if k != "mode"}
        parts = [
            f"{k}={v!r}" if k in {"connection", "token", "server", "user"} else f"{k}={v}" for k, v in shown.items()
        ]
        return f"Managed({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Managed) and other.describe() == self.describe()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.describe().items())))


class ManagedTokenSource:
    """Access tokens from the server, kept in memory for one run (a :class:`~postroom.auth.base.TokenSource`)."""

    def __init__(self, mode: Managed, runner_key: Secret, *, run_id: str) -> None:
        self.mode = mode
        self._key = runner_key
        self.run_id = run_id
        self._token: Secret | None = None
        self._expires_at = 0.0
        self._subject: str | None = None
        self._hosts: tuple[str, ...] = ()
        self._lock = threading.Lock()
        self.renewed_by_server = False

    def __repr__(self) -> str:
        return f"ManagedTokenSource({self.mode.connection!r} at {self.mode.server})"

    @property
    def account(self) -> str | None:
        return self._subject

    @property
    def scopes(self) -> tuple[str, ...]:
        return ()

    @property
    def hosts(self) -> tuple[str, ...]:
        """The mail hosts the server says the token is for."""
        return self._hosts

    def access_token(self) -> Secret:
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - 60:
                self._ask(rejected=None)
            assert self._token is not None
            return self._token

    def renew(self, rejected: Secret) -> Secret:
        with self._lock:
            _log.info("the mail server refused the managed token; asking the server for a new one")
            self._ask(rejected=rejected)
            assert self._token is not None
            return self._token

    def _ask(self, *, rejected: Secret | None) -> None:
        body: dict[str, Any] = {"run_id": self.run_id}
        if self.mode.token == "user":
            body["user"] = self.mode.user
        if rejected is not None:
            body["rejected_sha256"] = hashlib.sha256(rejected.reveal().encode()).hexdigest()
        path = f"/api/v1/connections/{quote(self.mode.connection, safe='')}/token"
        status, answer = ask_server(self.mode.server, self._key, path, body, ca_file=self.mode.ca_file)
        if status != 200:
            problem = str(answer.get("error") or f"HTTP {status}")
            hint = str(answer.get("hint") or "") or None
            what = f"the postroom server refused a token for {self.mode.connection!r}: {problem}"
            if status == 401:
                raise CredentialError(what, hint=hint or "check runner_key (a revoked key stops working)")
            if answer.get("status") in {"needs_sign_in", "revoked"}:
                raise ConsentRequiredError(what, hint=hint)
            raise OAuthError(what, hint=hint)
        self._token = Secret(str(answer["access_token"]))
        self._expires_at = float(answer.get("expires_at") or time.time() + 300)
        self._subject = answer.get("subject") or self._subject
        self._hosts = tuple(answer.get("hosts") or ())
        self.renewed_by_server = rejected is not None
