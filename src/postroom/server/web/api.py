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
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from postroom.errors import PostroomError
from postroom.server import lockers, runners
from postroom.server.audit import Actor, record
from postroom.server.connections import get_connection
from postroom.server.permissions import Permission
from postroom.server.services import Services
from postroom.server.store.tables import runners as runner_rows
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


def _token(request: Request, body: dict[str, Any]) -> JSONResponse:
    services: Services = request.app.state.services
    name = request.path_params["name"]
    ip = client_ip(request)
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    with services.database.tx() as db:
        runner = runners.authenticate(db, key) if scheme.lower() == "bearer" else None
        if runner is None:
            record(
                db,
                Actor("anonymous", None, ip),
                "token.issue",
                outcome="refused",
                connection=name,
                detail="no valid runner key",
            )
            return _refuse(
                401, "no valid runner key", hint="send Authorization: Bearer <runner key>; revoked keys stop working"
            )
        actor = Actor("runner", runner.name, ip)
        run_id = str(body.get("run_id") or "")[:200] or None

        def refused(status: int, why: str, hint: str | None = None, code: str | None = None) -> JSONResponse:
            record(db, actor, "token.issue", outcome="refused", connection=name, run_id=run_id, detail=why)
            return _refuse(status, why, hint=hint, code=code)

        if not run_id:
            return refused(400, "run_id is required", "send the id of the run the token is for")
        if not runner.can(Permission.RUN_BOTS):
            return refused(
                403, f"runner {runner.name!r} has no role with Run bots", "give its role the Run bots permission"
            )
        connection = get_connection(db, services.sealer, name)
        if connection is None:
            return refused(404, f"there is no connection {name!r}", "check the connection name")
        if not connection.invited_role_ids & runner.role_ids:
            return refused(
                403,
                f"runner {runner.name!r} is not in a role invited to {name!r}",
                "invite one of its roles on the connection's page",
            )
        principal = SHARED
        if connection.spec.token_type == "user":
            user_name = str(body.get("user") or "").strip().lower()
            if not user_name:
                return refused(400, f"{name!r} is user-specific: say which user the run belongs to", 'send "user"')
            user = db.execute(select(users.c.id).where(users.c.name == user_name, users.c.active.is_(True))).scalar()
            if user is None:
                return refused(404, f"there is no user {user_name!r}")
            user_role_ids = set(db.execute(select(user_roles.c.role_id).where(user_roles.c.user_id == user)).scalars())
            if not connection.invited_role_ids & user_role_ids:
                return refused(403, f"user {user_name!r} is not in a role invited to {name!r}")
            principal = user_principal(int(user))
        current = services.tokens.row(db, connection, principal)
        db.execute(runner_rows.update().where(runner_rows.c.id == runner.id).values(last_used_at=time.time()))
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
        issued = services.tokens.access_token(connection, principal, force=force)
    except TokenUnavailableError as unavailable:
        with services.database.tx() as db:
            record(
                db,
                actor,
                "token.issue",
                outcome="refused",
                connection=name,
                principal=principal,
                run_id=run_id,
                detail=str(unavailable),
            )
        return _refuse(409, str(unavailable), hint=unavailable.hint, code=unavailable.status)
    except PostroomError as failed:
        with services.database.tx() as db:
            record(
                db,
                actor,
                "token.issue",
                outcome="failed",
                connection=name,
                principal=principal,
                run_id=run_id,
                detail=str(failed),
            )
        return _refuse(502, str(failed), hint=failed.hint, code="provider_unreachable")
    with services.database.tx() as db:
        record(
            db,
            actor,
            "token.issue",
            connection=name,
            principal=principal,
            run_id=run_id,
            detail="after the mail server refused the previous one" if force else None,
        )
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
    services: Services = request.app.state.services
    where = "/".join(request.path_params[k] for k in ("locker", "credential", "attribute"))
    ip = client_ip(request)
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    with services.database.tx() as db:
        runner = runners.authenticate(db, key) if scheme.lower() == "bearer" else None
        if runner is None:
            record(
                db,
                Actor("anonymous", None, ip),
                "credential.read",
                outcome="refused",
                target=where,
                detail="no valid runner key",
            )
            return _refuse(401, "no valid runner key", hint="send Authorization: Bearer <runner key>")
        actor = Actor("runner", runner.name, ip)
        run_id = str(body.get("run_id") or "")[:200] or None
        if not run_id or not runner.can(Permission.RUN_BOTS):
            why = "run_id is required" if not run_id else f"runner {runner.name!r} has no role with Run bots"
            record(db, actor, "credential.read", outcome="refused", target=where, run_id=run_id, detail=why)
            return _refuse(400 if not run_id else 403, why)
        user = None
        user_name = str(body.get("user") or "").strip().lower()
        if user_name:
            user_id = db.execute(select(users.c.id).where(users.c.name == user_name, users.c.active.is_(True))).scalar()
            if user_id is not None:
                roles_of = frozenset(
                    db.execute(select(user_roles.c.role_id).where(user_roles.c.user_id == user_id)).scalars()
                )
                user = (int(user_id), roles_of)
        try:
            value, masked = lockers.value_for_run(
                db,
                services.sealer,
                locker=request.path_params["locker"],
                credential=request.path_params["credential"],
                attribute=request.path_params["attribute"],
                runner_role_ids=runner.role_ids,
                user=user,
            )
        except lockers.RunRefusedError as refused:
            record(db, actor, "credential.read", outcome="refused", target=where, run_id=run_id, detail=refused.reason)
            return _refuse(refused.status, refused.reason, hint=refused.hint)
        record(
            db, actor, "credential.read", target=where, run_id=run_id, principal=f"user:{user_name}" if user else None
        )
        db.execute(runner_rows.update().where(runner_rows.c.id == runner.id).values(last_used_at=time.time()))
    return JSONResponse({"value": value.reveal(), "masked": masked}, headers=_NO_STORE)


token = _json_route(_token)
credential = _json_route(_credential)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})
