"""The runner API: what a run needs, handed to it at run time, and nothing a runner could keep.

Both routes take ``Authorization: Bearer <runner key>`` and a JSON body with the ``run_id`` (and ``user``,
the user the run belongs to, for user-specific tokens and user-provided values):

- ``POST /api/v1/connections/{name}/token`` (``rejected_sha256``: the token the mail server refused)
  returns ``{"access_token", "expires_at", "hosts", "subject", "connection", "principal"}`` — never a
  refresh token;
- ``POST /api/v1/lockers/{locker}/credentials/{credential}/{attribute}`` returns ``{"value", "masked"}``
  to a runner in one of the locker's consumer roles.

A refusal names its reason (``error``, ``hint``, ``status``) and is audited; so is every answer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from postroom.errors import PostroomError
from postroom.server import lockers, runners
from postroom.server.audit import Actor, AuditNotStoredError, record
from postroom.server.audit import entry as audit_entry
from postroom.server.connections import StoredConnection, get_connection
from postroom.server.permissions import Permission
from postroom.server.services import Services
from postroom.server.store.tables import user_roles, users
from postroom.server.tokens import SHARED, TokenUnavailableError, user_principal
from postroom.server.web.guard import RUNNER, client_ip

__all__ = ["credential", "health", "token"]

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _refuse(status: int, error: str, *, hint: str | None = None, code: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error}
    if hint:
        body["hint"] = hint
    if code:
        body["status"] = code
    return JSONResponse(body, status_code=status, headers=_NO_STORE)


def _json_route(
    handler: Callable[[Request, dict[str, Any]], JSONResponse],
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The endpoint for ``handler``: the body read as a JSON object, then ``handler`` in a thread (the
    database is synchronous)."""

    async def endpoint(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _refuse(400, "the body is not a JSON object", hint='send {"run_id": "..."}')
        return await run_in_threadpool(handler, request, body)

    endpoint.access = RUNNER  # type: ignore[attr-defined]  # read by the route list
    return endpoint


class _RefusedError(Exception):
    """A runner's request refused: the answer it gets, and whom to audit it as."""

    def __init__(
        self,
        status: int,
        why: str,
        actor: Actor,
        run_id: str | None = None,
        *,
        hint: str | None = None,
        code: str | None = None,
        principal: str | None = None,
    ) -> None:
        super().__init__(why)
        self.status, self.why, self.actor, self.run_id = status, why, actor, run_id
        self.hint, self.code, self.principal = hint, code, principal

    def answer(self) -> JSONResponse:
        return _refuse(self.status, self.why, hint=self.hint, code=self.code)


@dataclass(frozen=True)
class _Run:
    """An authenticated runner's request: who asks (as an audit actor) and for which run."""

    runner: runners.Runner
    actor: Actor
    run_id: str

    def refused(self, status: int, why: str, hint: str | None = None) -> _RefusedError:
        return _RefusedError(status, why, self.actor, self.run_id, hint=hint)


def _run_of(db: Connection, request: Request, body: dict[str, Any]) -> _Run:
    """The runner whose key the request carries, with Run bots, and the run it asks for; else _RefusedError."""
    ip = client_ip(request)
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    runner = runners.authenticate(db, key) if scheme.lower() == "bearer" else None
    if runner is None:
        raise _RefusedError(
            401,
            "no valid runner key",
            Actor("anonymous", None, ip),
            hint="send Authorization: Bearer <runner key>; revoked keys stop working",
        )
    run = _Run(runner, Actor("runner", runner.name, ip), str(body.get("run_id") or "")[:200])
    if not run.run_id:
        raise _RefusedError(400, "run_id is required", run.actor, hint="send the id of the run this is for")
    if not runner.can(Permission.RUN_BOTS):
        raise run.refused(403, f"runner {runner.name!r} has no role with Run bots", "give its role Run bots")
    return run


def _user_name(body: dict[str, Any]) -> str:
    """The user a run says it belongs to (``user`` in the body), as user names are stored; "" if none."""
    return str(body.get("user") or "").strip().lower()


def _user_of(db: Connection, body: dict[str, Any]) -> tuple[str, int, frozenset[int]] | None:
    """The active user a run belongs to (``user`` in the body): name, id and role ids; None if there is none."""
    name = _user_name(body)
    if not name:
        return None
    found = db.execute(select(users.c.id).where(users.c.name == name, users.c.active.is_(True))).scalar()
    if found is None:
        return None
    role_ids = frozenset(db.execute(select(user_roles.c.role_id).where(user_roles.c.user_id == found)).scalars())
    return name, int(found), role_ids


def _token_target(
    db: Connection, services: Services, run: _Run, name: str, body: dict[str, Any]
) -> tuple[StoredConnection, str]:
    """The connection the run may use and whose token it gets (shared, or its user's); else _RefusedError."""
    connection = get_connection(db, services.sealer, name)
    if connection is None:
        raise run.refused(404, f"there is no connection {name!r}", "check the connection name")
    if not connection.invited_role_ids & run.runner.role_ids:
        raise run.refused(
            403,
            f"runner {run.runner.name!r} is not in a role invited to {name!r}",
            "invite one of its roles on the connection's page",
        )
    if connection.spec.token_type != "user":
        return connection, SHARED
    if not _user_name(body):
        raise run.refused(400, f"{name!r} is user-specific: say which user the run belongs to", 'send "user"')
    user = _user_of(db, body)
    if user is None:
        raise run.refused(404, f"there is no user {_user_name(body)!r}")
    user_name, user_id, role_ids = user
    if not connection.invited_role_ids & role_ids:
        raise run.refused(403, f"user {user_name!r} is not in a role invited to {name!r}")
    return connection, user_principal(user_id)


def _token(request: Request, body: dict[str, Any]) -> JSONResponse:
    """Checks in one read-only transaction (on SQLite it waits for no writer), the token from the row read
    there (a refresh only when it is near its end), then the audit entry and the runner's last use, committed
    with those of the requests answered at the same time before the answer leaves."""
    services: Services = request.app.state.services
    name = request.path_params["name"]
    try:
        with services.database.read() as db:
            run = _run_of(db, request, body)
            connection, principal = _token_target(db, services, run, name, body)
            current = services.tokens.row(db, connection, principal)
        rejected = str(body.get("rejected_sha256") or "")
        force = (
            bool(rejected)
            and current is not None
            and current.access_token is not None
            and hmac.compare_digest(
                hashlib.sha256(services.sealer.open(current.access_token).reveal().encode()).hexdigest(), rejected
            )
        )
        try:
            issued = services.tokens.access_token(connection, principal, force=force, row=current)
        except PostroomError as failed:  # 409: nobody signed in, revoked, refused; 502: the provider is away
            unavailable = failed if isinstance(failed, TokenUnavailableError) else None
            raise _RefusedError(
                409 if unavailable else 502,
                str(failed),
                run.actor,
                run.run_id,
                hint=failed.hint,
                code=unavailable.status if unavailable else "provider_unreachable",
                principal=principal,
            ) from None
    except _RefusedError as refused:
        with services.database.tx() as db:
            record(
                db,
                refused.actor,
                "token.issue",
                outcome="failed" if refused.status == 502 else "refused",
                connection=name,
                principal=refused.principal,
                run_id=refused.run_id,
                detail=refused.why,
            )
        return refused.answer()
    detail = "after the mail server refused the previous one" if force else None
    try:
        services.runner_audit.write(
            audit_entry(
                run.actor, "token.issue", connection=name, principal=principal, run_id=run.run_id, detail=detail
            ),
            run.runner.id,
        )
    except AuditNotStoredError as unaudited:  # no token without its audit entry; runners retry a 503
        return _refuse(503, str(unaudited), hint=unaudited.hint, code="audit_unavailable")
    return JSONResponse(
        {
            "access_token": issued.access_token.reveal(),
            "token_type": "Bearer",
            "expires_at": issued.expires_at,
            "subject": issued.subject,
            "hosts": connection.hosts(),
            "connection": connection.name,
            "principal": "shared" if principal == SHARED else "user",
        },
        headers=_NO_STORE,
    )


def _credential(request: Request, body: dict[str, Any]) -> JSONResponse:
    """A locker's attribute for a run in one of its consumer roles (a user-provided one: the run's user's)."""
    services: Services = request.app.state.services
    where = "/".join(request.path_params[k] for k in ("locker", "credential", "attribute"))
    with services.database.tx() as db:
        try:
            run = _run_of(db, request, body)
            user = _user_of(db, body)
            try:
                value, masked = lockers.value_for_run(
                    db,
                    services.sealer,
                    locker=request.path_params["locker"],
                    credential=request.path_params["credential"],
                    attribute=request.path_params["attribute"],
                    runner_role_ids=run.runner.role_ids,
                    user=(user[1], user[2]) if user else None,
                )
            except lockers.RunRefusedError as refused:
                raise _RefusedError(refused.status, refused.reason, run.actor, run.run_id, hint=refused.hint) from None
        except _RefusedError as refused:
            record(
                db,
                refused.actor,
                "credential.read",
                outcome="refused",
                target=where,
                run_id=refused.run_id,
                detail=refused.why,
            )
            return refused.answer()
        record(
            db,
            run.actor,
            "credential.read",
            target=where,
            run_id=run.run_id,
            principal=f"user:{user[0]}" if user else None,
        )
        runners.mark_used(db, [run.runner.id])
    return JSONResponse({"value": value.reveal(), "masked": masked}, headers=_NO_STORE)


token = _json_route(_token)
credential = _json_route(_credential)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})
