"""Users, roles and web sessions: who may sign in to the web UI, and what their roles let them do.

Passwords are hashed with argon2 (argon2-cffi's defaults, RFC 9106's second recommended set). A web
session is a random cookie value of which the database keeps only the SHA-256, with its CSRF token
and an expiry. Password sign-in is rate-limited per user name and per address, counted from the
audit log's refusals, so every process of the service sees the same count.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, select

from postroom.errors import ConfigError, PostroomError
from postroom.server.audit import Actor, record, refusals_since
from postroom.server.permissions import BUILTIN_ROLES, PERMISSIONS
from postroom.server.sealing import digest, random_token
from postroom.server.store.database import ServerDatabase
from postroom.server.store.tables import role_permissions, roles, user_roles, users, web_sessions

__all__ = [
    "SESSION_SECONDS",
    "SignInRefusedError",
    "User",
    "WebSession",
    "create_user",
    "ensure_builtin_roles",
    "sign_in",
]

SESSION_SECONDS = 8 * 3600
#: Password sign-in: at most this many refusals per user name or address ...
MAX_REFUSALS = 5
#: ... in this many seconds, after which sign-in waits.
REFUSAL_WINDOW = 300.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
_hasher = PasswordHasher()


class SignInRefusedError(PostroomError):
    """Wrong user name or password, or too many tries."""

    def __init__(self, problem: str, *, too_many: bool = False) -> None:
        super().__init__(problem)
        self.too_many = too_many


@dataclass(frozen=True)
class User:
    id: int
    name: str
    display_name: str | None
    permissions: frozenset[str]
    role_ids: frozenset[int]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


@dataclass(frozen=True)
class WebSession:
    id: str  # the digest (the cookie holds the value itself)
    user: User
    csrf: str


def check_user_name(name: str) -> str:
    if not _NAME.match(name):
        raise ConfigError("name", f"{name!r} is not a usable user name", hint="letters, digits and . _ @ + -")
    return name.lower()


def check_password(password: str) -> str:
    if len(password) < 12:
        raise ConfigError("password", "is shorter than 12 characters", hint="choose a longer one (a passphrase)")
    return password


def ensure_builtin_roles(db: Connection) -> None:
    """Make the built-in roles a new server starts with (idempotent)."""
    for name, (description, granted) in BUILTIN_ROLES.items():
        found = db.execute(select(roles.c.id).where(roles.c.name == name)).scalar()
        if found is None:
            found = db.execute(roles.insert().values(name=name, description=description)).inserted_primary_key[0]  # type: ignore[index]
            db.execute(role_permissions.insert(), [{"role_id": found, "permission": p} for p in sorted(granted)])


def role_id(db: Connection, name: str) -> int:
    found = db.execute(select(roles.c.id).where(roles.c.name == name)).scalar()
    if found is None:
        raise ConfigError("role", f"there is no role {name!r}", hint="see the Users and roles page")
    return int(found)


def create_user(
    db: Connection, name: str, password: str, *, role_names: Iterable[str], actor: Actor, display_name: str = ""
) -> int:
    name = check_user_name(name)
    check_password(password)
    if db.execute(select(users.c.id).where(users.c.name == name)).scalar() is not None:
        raise ConfigError("name", f"a user {name!r} exists already", hint="choose another name")
    user_id = db.execute(
        users.insert().values(
            name=name, display_name=display_name or None, password_hash=_hasher.hash(password), created_at=time.time()
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    ids = sorted({role_id(db, r) for r in role_names})
    if ids:
        db.execute(user_roles.insert(), [{"user_id": user_id, "role_id": r} for r in ids])
    record(db, actor, "user.create", target=name, detail="roles: " + ", ".join(sorted(role_names)))
    return int(user_id)


def set_user_roles(db: Connection, user_id: int, role_ids: Iterable[int], *, actor: Actor) -> None:
    name = db.execute(select(users.c.name).where(users.c.id == user_id)).scalar_one()
    db.execute(delete(user_roles).where(user_roles.c.user_id == user_id))
    ids = sorted(set(role_ids))
    if ids:
        db.execute(user_roles.insert(), [{"user_id": user_id, "role_id": r} for r in ids])
    names = db.execute(select(roles.c.name).where(roles.c.id.in_(ids))).scalars().all()
    record(db, actor, "user.roles", target=name, detail="roles: " + ", ".join(sorted(names)))


def load_user(db: Connection, user_id: int) -> User | None:
    row = db.execute(select(users).where(users.c.id == user_id, users.c.active.is_(True))).first()
    if row is None:
        return None
    role_ids = frozenset(
        int(r) for r in db.execute(select(user_roles.c.role_id).where(user_roles.c.user_id == user_id)).scalars()
    )
    granted = db.execute(
        select(role_permissions.c.permission).where(role_permissions.c.role_id.in_(role_ids))
    ).scalars()
    return User(int(row.id), row.name, row.display_name, frozenset(p for p in granted if p in PERMISSIONS), role_ids)


def sign_in(database: ServerDatabase, name: str, password: str, *, ip: str | None) -> tuple[str, WebSession]:
    """Check the password; a new session (its cookie value, and the session). Refusals are audited (each in
    a transaction of its own, committed) and counted: after :data:`MAX_REFUSALS` in :data:`REFUSAL_WINDOW`
    seconds, sign-in waits."""
    name = name.strip().lower()
    actor = Actor("anonymous", name[:200] or None, ip)

    def refuse(why: str, *, too_many: bool = False) -> SignInRefusedError:
        with database.tx() as db:
            record(db, actor, "web.sign_in", outcome="refused", detail=why)
        return SignInRefusedError(
            "too many sign-in attempts: wait a few minutes" if too_many else "wrong user name or password",
            too_many=too_many,
        )

    with database.tx() as db:
        tries = refusals_since(db, "web.sign_in", time.time() - REFUSAL_WINDOW, actor=name, ip=ip)
        row = db.execute(select(users).where(users.c.name == name, users.c.active.is_(True))).first()
    if tries >= MAX_REFUSALS:
        raise refuse("too many tries", too_many=True)
    try:
        if row is None:
            _hasher.hash(password)  # as slow as a real check: the answer's time tells nothing
            raise VerificationError
        _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise refuse("wrong user name or password") from None
    with database.tx() as db:
        return _new_session(db, row, password, ip)


def _new_session(db: Connection, row: Any, password: str, ip: str | None) -> tuple[str, WebSession]:
    if _hasher.check_needs_rehash(row.password_hash):
        db.execute(users.update().where(users.c.id == row.id).values(password_hash=_hasher.hash(password)))
    user = load_user(db, int(row.id))
    assert user is not None
    cookie, csrf = random_token(), random_token()
    now = time.time()
    db.execute(
        web_sessions.insert().values(
            id=digest(cookie), user_id=user.id, csrf=csrf, created_at=now, expires_at=now + SESSION_SECONDS
        )
    )
    db.execute(delete(web_sessions).where(web_sessions.c.expires_at < now))
    record(db, Actor("user", user.name, ip), "web.sign_in")
    return cookie, WebSession(digest(cookie), user, csrf)


def session_for(db: Connection, cookie: str) -> WebSession | None:
    row = db.execute(select(web_sessions).where(web_sessions.c.id == digest(cookie))).first()
    if row is None or row.expires_at < time.time():
        return None
    user = load_user(db, int(row.user_id))
    return WebSession(row.id, user, row.csrf) if user is not None else None


def sign_out(db: Connection, session: WebSession, *, ip: str | None) -> None:
    db.execute(delete(web_sessions).where(web_sessions.c.id == session.id))
    record(db, Actor("user", session.user.name, ip), "web.sign_out")
