"""The audit log: one append-only row per sign-in, refresh, token handed out, change and refusal.

Entries name who, what, which connection and principal, which run, from where and how it went —
never a secret: the detail is redacted of every secret the process knows, and callers pass names,
never values.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select

from postroom.errors import PostroomError
from postroom.redaction import redact
from postroom.server.store.tables import audit

__all__ = ["Actor", "AuditFilter", "AuditNotStoredError", "GroupWriter", "entry", "record", "search"]


@dataclass(frozen=True)
class Actor:
    """Who did it: a web user, a runner, the service itself, or someone not signed in."""

    kind: str  # user, runner, system, anonymous
    name: str | None = None
    ip: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system", "postroom server")


def entry(
    actor: Actor,
    action: str,
    *,
    outcome: str = "ok",
    connection: str | None = None,
    principal: str | None = None,
    run_id: str | None = None,
    target: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """One audit row's values (the detail redacted of every secret the process knows)."""
    return {
        "at": time.time(),
        "actor_kind": actor.kind,
        "actor": actor.name,
        "action": action,
        "outcome": outcome,
        "connection": connection,
        "principal": principal,
        "run_id": run_id[:200] if run_id else None,
        "target": target,
        "ip": actor.ip,
        "detail": redact(detail)[:2000] if detail else None,
    }


def record(db: Connection, actor: Actor, action: str, **fields: Any) -> None:
    """Write an audit entry in the caller's transaction (it commits with the change it describes)."""
    db.execute(audit.insert().values(**entry(actor, action, **fields)))


class AuditNotStoredError(PostroomError):
    """An answer's audit entry could not be committed: the answer is not given."""


class GroupWriter:
    """Audit entries of the runner API, written by one thread in shared transactions (a group commit).

    A request hands its entry over and waits until the transaction holding it has committed, so an answer
    never leaves before its audit entry is stored; the requests that arrived meanwhile share the next
    transaction. On SQLite, one write transaction per answer queued every runner behind the single writer.
    ``extra(db, items)`` runs in the same transaction (e.g. the runners' last use).
    """

    _MAX_GROUP = 500

    def __init__(self, database: Any, extra: Callable[[Connection, list[Any]], None] | None = None) -> None:
        self._database = database
        self._extra = extra
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def write(self, values: dict[str, Any], item: Any = None) -> None:
        """Store ``values`` (from :func:`entry`); returns once committed, else raises
        :class:`AuditNotStoredError` (each waiter its own, caused by what the commit raised)."""
        pending = _Pending(values, item)
        self._ensure_thread()
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise AuditNotStoredError(
                f"the audit entry could not be stored ({type(pending.error).__name__}); nothing was handed out",
                hint=getattr(pending.error, "hint", None) or "check the server database",
            ) from pending.error

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="postroom-audit-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            while len(group) < self._MAX_GROUP:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            error: BaseException | None = None
            try:
                with self._database.tx() as db:
                    db.execute(audit.insert(), [pending.values for pending in group])
                    if self._extra is not None:
                        self._extra(db, [pending.item for pending in group if pending.item is not None])
            except BaseException as failed:  # every waiter is told; the writer goes on
                error = failed
            for pending in group:
                pending.error = error
                pending.done.set()


@dataclass
class _Pending:
    values: dict[str, Any]
    item: Any
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


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
