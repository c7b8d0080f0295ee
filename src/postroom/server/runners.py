"""Runners: the machines and bot accounts that ask the service for tokens, each with a key.

A key reads ``prk_<runner id>_<secret>``; the database keeps only the SHA-256 of the secret, so the
key is shown once, when it is made. A revoked runner's key stops working at once. What a runner may
get is decided by its roles, as for users.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, select

from postroom.credentials import Secret
from postroom.errors import ConfigError
from postroom.server.audit import Actor, record
from postroom.server.sealing import digest, random_token
from postroom.server.store.tables import role_permissions, roles, runner_roles, runners

__all__ = ["Runner", "authenticate", "create_runner", "mark_used", "revoke_runner"]

_KEY = re.compile(r"^prk_(\d+)_([A-Za-z0-9_-]{20,100})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class Runner:
    id: int
    name: str
    role_ids: frozenset[int]
    permissions: frozenset[str]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def create_runner(db: Connection, name: str, *, role_ids: Iterable[int], actor: Actor) -> Secret:
    """Register a runner; its key (shown to the caller once, never stored)."""
    if not _NAME.match(name):
        raise ConfigError("name", f"{name!r} is not a usable runner name", hint="letters, digits and . _ -")
    if db.execute(select(runners.c.id).where(runners.c.name == name)).scalar() is not None:
        raise ConfigError("name", f"a runner {name!r} exists already", hint="revoke it first, or choose another name")
    secret = random_token()
    runner_id = db.execute(
        runners.insert().values(name=name, key_hash=digest(secret), created_by=actor.name, created_at=time.time())
    ).inserted_primary_key[0]  # type: ignore[index]
    ids = sorted(set(role_ids))
    if ids:
        db.execute(runner_roles.insert(), [{"runner_id": runner_id, "role_id": r} for r in ids])
    names = db.execute(select(roles.c.name).where(roles.c.id.in_(ids))).scalars().all()
    record(db, actor, "runner.create", target=name, detail="roles: " + ", ".join(sorted(names)))
    return Secret(f"prk_{runner_id}_{secret}")


def revoke_runner(db: Connection, runner_id: int, *, actor: Actor) -> None:
    name = db.execute(select(runners.c.name).where(runners.c.id == runner_id)).scalar()
    if name is None:
        raise ConfigError("runner", "no such runner")
    db.execute(runners.update().where(runners.c.id == runner_id).values(revoked_at=time.time()))
    db.execute(delete(runner_roles).where(runner_roles.c.runner_id == runner_id))
    record(db, actor, "runner.revoke", target=name)


#: The runner, its roles and their permissions in one statement (built once: building one costs more than
#: running it, and every runner API request runs this).
_RUNNER_WITH_GRANTS = (
    select(
        runners.c.id,
        runners.c.name,
        runners.c.key_hash,
        runners.c.revoked_at,
        runner_roles.c.role_id,
        role_permissions.c.permission,
    )
    .select_from(runners)
    .outerjoin(runner_roles, runner_roles.c.runner_id == runners.c.id)
    .outerjoin(role_permissions, role_permissions.c.role_id == runner_roles.c.role_id)
    .where(runners.c.id == bindparam("runner_id"))
)


def mark_used(db: Connection, runner_ids: Iterable[int]) -> None:
    """The runners just answered were used now (the Runners page shows it)."""
    ids = set(runner_ids)
    if ids:
        db.execute(runners.update().where(runners.c.id.in_(ids)).values(last_used_at=time.time()))


def authenticate(db: Connection, key: str) -> Runner | None:
    """The runner this key belongs to; None for a malformed, unknown or revoked key."""
    found = _KEY.match(key.strip())
    if found is None:
        return None
    rows = db.execute(_RUNNER_WITH_GRANTS, {"runner_id": int(found.group(1))}).all()
    if not rows or rows[0].revoked_at is not None:
        return None
    if not hmac.compare_digest(rows[0].key_hash, digest(found.group(2))):
        return None
    role_ids = frozenset(int(r.role_id) for r in rows if r.role_id is not None)
    granted = frozenset(r.permission for r in rows if r.permission is not None)
    return Runner(int(rows[0].id), rows[0].name, role_ids, granted)
