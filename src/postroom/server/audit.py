"""The audit log: one append-only row per sign-in, refresh, token handed out, change and refusal.

Entries name who, what, which connection and principal, which run, from where and how it went —
never a secret: the detail is redacted of every secret the process knows, and callers pass names,
never values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from postroom.redaction import redact
from postroom.server.store.tables import audit

__all__ = ["Actor", "AuditFilter", "record", "search"]


@dataclass(frozen=True)
class Actor:
    """Who did it: a web user, a runner, the service itself, or someone not signed in."""

    kind: str  # user, runner, system, anonymous
    name: str | None = None
    ip: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system", "postroom server")


def record(
    db: Connection,
    actor: Actor,
    action: str,
    *,
    outcome: str = "ok",
    connection: str | None = None,
    principal: str | None = None,
    run_id: str | None = None,
    target: str | None = None,
    detail: str | None = None,
) -> None:
    db.execute(
        audit.insert().values(
            at=time.time(),
            actor_kind=actor.kind,
            actor=actor.name,
            action=action,
            outcome=outcome,
            connection=connection,
            principal=principal,
            run_id=run_id[:200] if run_id else None,
            target=target,
            ip=actor.ip,
            detail=redact(detail)[:2000] if detail else None,
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    action: str | None = None
    actor: str | None = None
    connection: str | None = None
    outcome: str | None = None
    limit: int = 200


def search(db: Connection, where: AuditFilter) -> list[Mapping[str, Any]]:
    query = select(audit).order_by(audit.c.id.desc()).limit(max(1, min(where.limit, 1000)))
    if where.action:
        query = query.where(audit.c.action.like(where.action.replace("*", "%")))
    if where.actor:
        query = query.where(audit.c.actor == where.actor)
    if where.connection:
        query = query.where(audit.c.connection == where.connection)
    if where.outcome:
        query = query.where(audit.c.outcome == where.outcome)
    return [dict(row._mapping) for row in db.execute(query)]


def refusals_since(db: Connection, action: str, since: float, *, actor: str | None, ip: str | None) -> int:
    """How often ``action`` was refused since ``since`` for this actor name or from this address."""
    query = (
        select(func.count())
        .select_from(audit)
        .where(audit.c.action == action, audit.c.outcome == "refused", audit.c.at >= since)
    )
    who = []
    if actor:
        who.append(audit.c.actor == actor)
    if ip:
        who.append(audit.c.ip == ip)
    if who:
        from sqlalchemy import or_

        query = query.where(or_(*who))
    return int(db.execute(query).scalar_one())
