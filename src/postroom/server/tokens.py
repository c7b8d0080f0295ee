"""Tokens held by the service, one per (connection, principal): shared, or one per user.

Refresh happens here only, single-flight per (connection, principal): in one process under a lock,
across processes by a compare-and-swap of the row's ``generation`` that takes a short refresh lease.
Only the lease holder calls the identity provider, so two workers never spend the same refresh token.
An ``invalid_grant`` is read again before it counts: a sibling that won the race has stored a newer
token. Tokens are refreshed ahead of expiry when asked for, and idle refresh tokens are kept alive
(Microsoft drops one unused for 90 days).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select

from postroom.auth.oauth.clients import OAuthClient
from postroom.auth.oauth.tokens import TokenRecord, TokenResponse, expires_soon
from postroom.credentials import Secret
from postroom.errors import ConsentRequiredError, OAuthError, PostroomError, ServerUnreachableError
from postroom.logs import get_logger
from postroom.server.audit import Actor, record
from postroom.server.connections import StoredConnection
from postroom.server.sealing import Sealer
from postroom.server.store.database import ServerDatabase
from postroom.server.store.tables import tokens

__all__ = [
    "KEEPALIVE_AFTER",
    "SHARED",
    "IssuedToken",
    "TokenStatus",
    "TokenUnavailableError",
    "Tokens",
    "user_principal",
]

_log = get_logger("postroom.server")
SHARED = "shared"
#: The row's ``generation`` moves on at every write: taking the refresh lease is a compare-and-swap on the
#: generation the caller read, so a caller holding an old copy of the row (an old refresh token) never refreshes.
#: A refresh lease lasts longer than the identity provider may take to answer (30 s HTTP timeout).
REFRESH_LEASE = 60.0
#: How long a caller waits for a sibling's refresh before giving up.
WAIT_FOR_SIBLING = 45.0
#: Refresh tokens unused this long are refreshed by the keep-alive (Microsoft: 90 days of inactivity).
KEEPALIVE_AFTER = 7 * 86400.0


def user_principal(user_id: int) -> str:
    return f"user:{user_id}"


class TokenUnavailableError(PostroomError):
    """No usable token: nobody signed in, the sign-in was revoked or refused, or the connection is wrong."""

    def __init__(self, problem: str, *, status: str, hint: str | None = None) -> None:
        super().__init__(problem, hint=hint)
        self.status = status


@dataclass(frozen=True)
class TokenStatus:
    """A token's status as the UI and the API show it, derived from what is stored."""

    label: str  # Active, Expiring, Needs sign-in, Revoked, Misconfigured
    subject: str | None = None
    expires_at: float | None = None
    detail: str | None = None

    @property
    def code(self) -> str:
        return self.label.lower().replace(" ", "_").replace("-", "_")


@dataclass(frozen=True)
class IssuedToken:
    access_token: Secret = field(repr=False)
    expires_at: float
    subject: str | None


def status_of(connection: StoredConnection, row: Any | None, now: float | None = None) -> TokenStatus:
    now = now or time.time()
    if connection.spec.grant == "client_credentials":
        if row is not None and row.last_error:
            return TokenStatus("Misconfigured", None, row.expires_at, row.last_error)
        return TokenStatus("Active", None, row.expires_at if row is not None else None)
    if row is None or row.access_token is None:
        return TokenStatus("Needs sign-in")
    if row.revoked_at is not None:
        return TokenStatus("Revoked", row.subject, None, "revoked; sign in again")
    if row.last_error:
        label = "Needs sign-in" if row.last_error.startswith("sign in again") else "Misconfigured"
        return TokenStatus(label, row.subject, row.expires_at, row.last_error)
    if row.refresh_token is None:
        if row.expires_at <= now:
            return TokenStatus("Needs sign-in", row.subject, row.expires_at, "expired, and no refresh token")
        if row.expires_at - now < 3600:
            return TokenStatus("Expiring", row.subject, row.expires_at, "no refresh token: sign in again soon")
    return TokenStatus("Active", row.subject, row.expires_at)


def _record_of(row: Any, sealer: Sealer) -> TokenRecord | None:
    if row is None or row.access_token is None or row.expires_at is None:
        return None
    obtained = row.last_refresh_at or row.signed_in_at or 0.0
    return TokenRecord(
        sealer.open(row.access_token),
        float(row.expires_at),
        sealer.open(row.refresh_token) if row.refresh_token else None,
        tuple((row.scopes or "").split()),
        row.subject,
        "",
        float(obtained),
        "",
    )


#: Built once: every runner API request reads a token row.
_TOKEN_ROW = select(tokens).where(
    tokens.c.connection_id == bindparam("connection_id"), tokens.c.principal == bindparam("principal")
)


def _usable(row: Any, sealer: Sealer) -> IssuedToken | None:
    """The row's access token if it can be handed out as it is: not revoked, not waiting for a new sign-in,
    not near its end (the same margin a refresh ahead of expiry uses)."""
    if row.revoked_at is not None or (row.last_error or "").startswith("sign in again"):
        return None
    if row.access_token is None or row.expires_at is None:
        return None
    if expires_soon(float(row.expires_at), float(row.last_refresh_at or row.signed_in_at or 0.0)):
        return None
    return IssuedToken(sealer.open(row.access_token), float(row.expires_at), row.subject)


class Tokens:
    """The service's token store and its refresh discipline."""

    def __init__(
        self,
        database: ServerDatabase,
        sealer: Sealer,
        client_for: Callable[[StoredConnection], OAuthClient],
    ) -> None:
        self.database = database
        self.sealer = sealer
        self.client_for = client_for
        self._locks: dict[tuple[int, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, key: tuple[int, str]) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())

    def row(self, db: Connection, connection: StoredConnection, principal: str) -> Any | None:
        return db.execute(_TOKEN_ROW, {"connection_id": connection.id, "principal": principal}).first()

    def status(self, db: Connection, connection: StoredConnection, principal: str) -> TokenStatus:
        return status_of(connection, self.row(db, connection, principal))

    # -- sign-in ----------------------------------------------------------------------------------

    def store_sign_in(
        self, db: Connection, connection: StoredConnection, principal: str, response: TokenResponse, *, by: str
    ) -> TokenRecord:
        record_ = TokenRecord.from_response(response, fingerprint="", grant=connection.spec.grant)
        values = {
            "access_token": self.sealer.seal(record_.access_token),
            "expires_at": record_.expires_at,
            "refresh_token": self.sealer.seal(record_.refresh_token) if record_.refresh_token else None,
            "scopes": " ".join(record_.scopes) or None,
            "subject": record_.account,
            "signed_in_at": record_.obtained_at,
            "signed_in_by": by,
            "last_refresh_at": None,
            "last_error": None,
            "revoked_at": None,
            "refreshing_until": None,
        }
        user_id = int(principal.partition(":")[2]) if principal.startswith("user:") else None
        insert = self.database.insert(tokens).values(
            connection_id=connection.id, principal=principal, user_id=user_id, generation=1, **values
        )
        db.execute(
            insert.on_conflict_do_update(
                index_elements=[tokens.c.connection_id, tokens.c.principal],
                set_={**values, "generation": tokens.c.generation + 1},
            )
        )
        return record_

    def revoke(self, db: Connection, connection: StoredConnection, principal: str, *, actor: Actor) -> None:
        db.execute(
            tokens.update()
            .where(tokens.c.connection_id == connection.id, tokens.c.principal == principal)
            .values(access_token=None, refresh_token=None, revoked_at=time.time(), generation=tokens.c.generation + 1)
        )
        record(db, actor, "token.revoke", connection=connection.name, principal=principal)

    # -- handing out access tokens -----------------------------------------------------------------

    def access_token(
        self, connection: StoredConnection, principal: str, *, force: bool = False, row: Any = None
    ) -> IssuedToken:
        """A valid access token, refreshed first when it is near its end (or when ``force``: the mail
        server refused the last one). ``row``: the token's row as the caller just read it. A token that is
        valid is handed out without the refresh lock (that lock queued every runner of a shared token
        behind each other); only a refresh takes it, and reads the row again under it."""
        if not force and row is not None:
            current = _usable(row, self.sealer)
            if current is not None:
                return current
        with self._lock((connection.id, principal)):
            return self._access_token(connection, principal, force=force)

    def _access_token(self, connection: StoredConnection, principal: str, *, force: bool) -> IssuedToken:
        waited_until = time.monotonic() + WAIT_FOR_SIBLING
        refused_generation: int | None = None
        while True:
            with self.database.read() as db:
                row = self.row(db, connection, principal)
            if row is None and connection.spec.grant == "client_credentials":
                with self.database.tx() as db:  # the app's first token: a row to take the refresh lease on
                    db.execute(
                        self.database.insert(tokens)
                        .values(connection_id=connection.id, principal=principal, generation=0)
                        .on_conflict_do_nothing()
                    )
                continue
            if row is None:
                raise TokenUnavailableError(
                    f"nobody has signed in to {connection.name!r}"
                    + (" for this user" if principal != SHARED else " for its shared token"),
                    status="needs_sign_in",
                    hint="sign in from the connection's page"
                    if principal == SHARED
                    else "the user signs in under My connections",
                )
            if row.revoked_at is not None:
                raise TokenUnavailableError(
                    f"the token of {connection.name!r} was revoked", status="revoked", hint="sign in again"
                )
            if row.last_error and row.last_error.startswith("sign in again"):
                raise TokenUnavailableError(row.last_error, status="needs_sign_in", hint="sign in again")
            current = _record_of(row, self.sealer)
            if refused_generation is not None and row.generation == refused_generation:
                assert row.last_error
                raise TokenUnavailableError(row.last_error, status="needs_sign_in", hint="sign in again")
            if current is not None and not current.expires_soon() and not force:
                return IssuedToken(current.access_token, current.expires_at, current.account)
            if connection.spec.grant != "client_credentials" and (current is None or current.refresh_token is None):
                if current is not None and current.expires_at > time.time() + 30 and not force:
                    return IssuedToken(current.access_token, current.expires_at, current.account)
                raise TokenUnavailableError(
                    f"the sign-in to {connection.name!r} has expired and holds no refresh token",
                    status="needs_sign_in",
                    hint="sign in again (ask for offline access so a refresh token comes)",
                )
            generation = int(row.generation)
            if not self._take_lease(connection, principal, generation):
                if time.monotonic() > waited_until:
                    raise TokenUnavailableError(
                        "another process has been refreshing this token for too long", status="busy", hint="try again"
                    )
                time.sleep(random.uniform(0.05, 0.15))  # noqa: S311 - jitter, not a secret
                continue
            force = False
            outcome = self._refresh(connection, principal, generation + 1, current)
            if isinstance(outcome, IssuedToken):
                return outcome
            refused_generation = outcome  # read again: a sibling may have stored a newer token meanwhile

    def _take_lease(self, connection: StoredConnection, principal: str, generation: int) -> bool:
        now = time.time()
        with self.database.tx() as db:
            taken = db.execute(
                tokens.update()
                .where(
                    tokens.c.connection_id == connection.id,
                    tokens.c.principal == principal,
                    tokens.c.generation == generation,
                    or_(tokens.c.refreshing_until.is_(None), tokens.c.refreshing_until < now),
                )
                .values(generation=generation + 1, refreshing_until=now + REFRESH_LEASE)
            )
            return bool(taken.rowcount == 1)

    def _refresh(
        self, connection: StoredConnection, principal: str, generation: int, current: TokenRecord | None
    ) -> IssuedToken | int:
        """Refresh under the lease of ``generation``: the new token, or the generation an ``invalid_grant``
        left (the caller reads the row again before it believes it). Every write here moves the generation
        on, so that no reader of the row as it was can take a lease on it afterwards."""
        after = generation + 1
        where = (
            tokens.c.connection_id == connection.id,
            tokens.c.principal == principal,
            tokens.c.generation == generation,
        )
        client = self.client_for(connection)
        try:
            if connection.spec.grant == "client_credentials":
                response = client.client_credentials()
            else:
                assert current is not None and current.refresh_token is not None
                response = client.refresh(current.refresh_token)
        except ConsentRequiredError as refused:
            self._release_failed(
                connection, principal, where, after, str(refused), f"sign in again: the refresh was refused ({refused})"
            )
            return after
        except ServerUnreachableError:
            self._release_failed(connection, principal, where, after, "the identity provider could not be reached")
            if current is not None and current.expires_at > time.time() + 30:
                return IssuedToken(current.access_token, current.expires_at, current.account)
            raise
        except OAuthError as wrong:
            self._release_failed(connection, principal, where, after, str(wrong), str(wrong))
            raise TokenUnavailableError(str(wrong), status="misconfigured", hint=wrong.hint) from None
        fresh = TokenRecord.from_response(response, fingerprint="", grant=connection.spec.grant, previous=current)
        with self.database.tx() as db:
            stored = db.execute(
                tokens.update()
                .where(*where)
                .values(
                    access_token=self.sealer.seal(fresh.access_token),
                    expires_at=fresh.expires_at,
                    refresh_token=self.sealer.seal(fresh.refresh_token) if fresh.refresh_token else None,
                    scopes=" ".join(fresh.scopes) or None,
                    subject=fresh.account,
                    last_refresh_at=fresh.obtained_at,
                    refreshing_until=None,
                    last_error=None,
                    generation=after,
                )
            )
            if stored.rowcount != 1:  # our lease ran out and a sibling took over: its token wins
                _log.warning("a refresh of %s finished after its lease; its result is dropped", connection.name)
                return -1  # not a generation: read the row again
            rotated = (
                fresh.refresh_token is not None and current is not None and fresh.refresh_token != current.refresh_token
            )
            record(
                db,
                Actor.system(),
                "token.refresh",
                connection=connection.name,
                principal=principal,
                detail="new refresh token stored" if rotated else None,
            )
        return IssuedToken(fresh.access_token, fresh.expires_at, fresh.account)

    def _release_failed(
        self,
        connection: StoredConnection,
        principal: str,
        where: tuple[Any, ...],
        after: int,
        detail: str,
        last_error: str | None = None,
    ) -> None:
        """A refresh that failed: the lease let go, the generation moved on, the error kept on the row (when it
        is one the next request must see: a refused refresh token, a misconfiguration), and audited."""
        values: dict[str, Any] = {"refreshing_until": None, "generation": after}
        if last_error is not None:
            values["last_error"] = last_error
        with self.database.tx() as db:
            db.execute(tokens.update().where(*where).values(**values))
            record(
                db,
                Actor.system(),
                "token.refresh",
                outcome="failed",
                connection=connection.name,
                principal=principal,
                detail=detail,
            )

    def keep_alive(self, connections: list[StoredConnection], *, older_than: float = KEEPALIVE_AFTER) -> int:
        """Refresh every refresh token unused for ``older_than`` seconds; how many were refreshed."""
        by_id = {c.id: c for c in connections if c.spec.grant != "client_credentials"}
        cutoff = time.time() - older_than
        with self.database.tx() as db:
            rows = db.execute(
                select(tokens.c.connection_id, tokens.c.principal).where(
                    tokens.c.refresh_token.is_not(None),
                    tokens.c.revoked_at.is_(None),
                    tokens.c.last_error.is_(None),
                    or_(
                        tokens.c.last_refresh_at < cutoff,
                        tokens.c.last_refresh_at.is_(None) & (tokens.c.signed_in_at < cutoff),
                    ),
                )
            ).all()
        done = 0
        for row in rows:
            connection = by_id.get(int(row.connection_id))
            if connection is None:
                continue
            try:
                self.access_token(connection, row.principal, force=True)
                done += 1
            except PostroomError as exc:
                _log.warning("keep-alive refresh of %s (%s) failed: %s", connection.name, row.principal, exc)
        return done
