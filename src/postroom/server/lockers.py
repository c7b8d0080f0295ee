"""The shared credential vault: lockers of credentials, their people, and what each may do.

As in the suites postroom replaces: a credential has named attributes, each *standard* (one value, set by
its owner) or *user-provided* (each consumer gives their own), optionally *masked* (never shown again). A
locker has users as **owners** (everything, members included), **managers** (everything but choosing
owners, managers and participants), **participants** (see the locker, add and see only their own
credentials), and roles as **consumers** (see it, give their user-provided values, and — the only way to
read a value — use its credentials in bot runs). "Administer all lockers" acts as an owner everywhere.
Values are sealed; names are case-insensitive and stored in lower case.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, select

from postroom.credentials import Secret
from postroom.errors import ConfigError
from postroom.server.accounts import User
from postroom.server.audit import Actor, record
from postroom.server.permissions import Permission
from postroom.server.sealing import Sealer
from postroom.server.store.tables import (
    attribute_values,
    attributes,
    credentials,
    locker_consumers,
    locker_members,
    lockers,
)

__all__ = ["MEMBERSHIPS", "AttributeSpec", "Locker", "LockerAccess", "create_credential", "create_locker"]

MEMBERSHIPS = ("owner", "manager", "participant")
MAX_ATTRIBUTES = 50
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")


def check_name(what: str, name: str) -> str:
    name = name.strip().lower()
    if not _NAME.match(name):
        raise ConfigError(what, f"{name!r} is not a usable name", hint="letters, digits and . _ - (no / or spaces)")
    return name


@dataclass(frozen=True)
class AttributeSpec:
    name: str
    user_provided: bool = False
    masked: bool = True
    value: Secret | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Locker:
    id: int
    name: str
    description: str | None
    members: dict[int, str]
    consumer_role_ids: frozenset[int]


@dataclass(frozen=True)
class LockerAccess:
    """What one user may do in one locker."""

    locker: Locker
    as_: str  # owner, manager, participant, consumer, administrator
    user: User

    @property
    def chooses_people(self) -> bool:
        return self.as_ in {"owner", "administrator"}

    @property
    def chooses_consumers(self) -> bool:
        return self.as_ in {"owner", "manager", "administrator"}

    @property
    def adds_credentials(self) -> bool:
        return self.as_ in {"owner", "manager", "participant", "administrator"}

    def sees(self, credential_owner: int) -> bool:
        return self.as_ != "participant" or credential_owner == self.user.id

    def edits(self, credential_owner: int) -> bool:
        return self.as_ in {"owner", "manager", "administrator"} or (
            self.as_ == "participant" and credential_owner == self.user.id
        )


def _load(db: Connection, row: Any) -> Locker:
    members = {
        int(m.user_id): m.membership
        for m in db.execute(select(locker_members).where(locker_members.c.locker_id == row.id))
    }
    consumers = frozenset(
        int(r)
        for r in db.execute(select(locker_consumers.c.role_id).where(locker_consumers.c.locker_id == row.id)).scalars()
    )
    return Locker(int(row.id), row.name, row.description, members, consumers)


def get_locker(db: Connection, name: str) -> Locker | None:
    row = db.execute(select(lockers).where(lockers.c.name == name.strip().lower())).first()
    return _load(db, row) if row is not None else None


def access_for(locker: Locker, user: User) -> LockerAccess | None:
    membership = locker.members.get(user.id)
    if membership is not None:
        return LockerAccess(locker, membership, user)
    if user.can(Permission.ADMINISTER_LOCKERS):
        return LockerAccess(locker, "administrator", user)
    if locker.consumer_role_ids & user.role_ids:
        return LockerAccess(locker, "consumer", user)
    return None


def visible_lockers(db: Connection, user: User) -> list[tuple[Locker, LockerAccess]]:
    found = []
    for row in db.execute(select(lockers).order_by(lockers.c.name)):
        locker = _load(db, row)
        access = access_for(locker, user)
        if access is not None:
            found.append((locker, access))
    return found


def create_locker(db: Connection, name: str, description: str, *, user: User, actor: Actor) -> Locker:
    name = check_name("name", name)
    if get_locker(db, name) is not None:
        raise ConfigError("name", f"a locker {name!r} exists already", hint="choose another name")
    locker_id = db.execute(
        lockers.insert().values(
            name=name, description=description or None, created_by=user.name, created_at=time.time()
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    db.execute(locker_members.insert().values(locker_id=locker_id, user_id=user.id, membership="owner"))
    record(db, actor, "locker.create", target=name)
    found = get_locker(db, name)
    assert found is not None
    return found


def set_people(
    db: Connection,
    access: LockerAccess,
    *,
    owners: Iterable[int] | None,
    managers: Iterable[int] | None,
    participants: Iterable[int] | None,
    consumer_role_ids: Iterable[int],
    actor: Actor,
) -> None:
    """Change the members (owners and administrators only) and the consumers (managers too)."""
    locker = access.locker
    if not access.chooses_consumers:
        raise PermissionError("only the locker's owners and managers choose its consumers")
    if owners is not None or managers is not None or participants is not None:
        if not access.chooses_people:
            raise PermissionError("only the locker's owners choose its owners, managers and participants")
        chosen: dict[int, str] = {}
        for membership, ids in (("participant", participants), ("manager", managers), ("owner", owners)):
            for user_id in ids or ():
                if user_id in chosen and chosen[user_id] != "owner":
                    raise ConfigError("members", "a user is one of owner, manager or participant", hint="pick one")
                chosen[user_id] = membership
        if "owner" not in chosen.values():
            raise ConfigError("owners", "a locker needs at least one owner", hint="keep yourself or another owner")
        db.execute(delete(locker_members).where(locker_members.c.locker_id == locker.id))
        db.execute(
            locker_members.insert(),
            [{"locker_id": locker.id, "user_id": u, "membership": m} for u, m in sorted(chosen.items())],
        )
    db.execute(delete(locker_consumers).where(locker_consumers.c.locker_id == locker.id))
    ids = sorted(set(consumer_role_ids))
    if ids:
        db.execute(locker_consumers.insert(), [{"locker_id": locker.id, "role_id": r} for r in ids])
    record(db, actor, "locker.people", target=locker.name)


def create_credential(
    db: Connection,
    sealer: Sealer,
    access: LockerAccess,
    name: str,
    description: str,
    specs: Sequence[AttributeSpec],
    *,
    actor: Actor,
) -> None:
    if not access.adds_credentials:
        raise PermissionError("consumers use credentials; they do not add them")
    name = check_name("credential", name)
    if not specs:
        raise ConfigError("attributes", "a credential needs at least one attribute", hint="e.g. username and password")
    if len(specs) > MAX_ATTRIBUTES:
        raise ConfigError("attributes", f"at most {MAX_ATTRIBUTES} attributes", hint="split it into credentials")
    names = [check_name("attribute", s.name) for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError("attributes", "two attributes have the same name", hint="names are case-insensitive")
    if db.execute(
        select(credentials.c.id).where(credentials.c.locker_id == access.locker.id, credentials.c.name == name)
    ).first():
        raise ConfigError(
            "credential", f"{access.locker.name} holds a credential {name!r} already", hint="choose another name"
        )
    now = time.time()
    credential_id = db.execute(
        credentials.insert().values(
            locker_id=access.locker.id,
            name=name,
            description=description or None,
            owner_id=access.user.id,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]  # type: ignore[index]
    for spec, attribute in zip(specs, names, strict=True):
        if spec.user_provided and spec.value is not None:
            raise ConfigError(attribute, "a user-provided attribute has no value of its own", hint="leave it empty")
        db.execute(
            attributes.insert().values(
                credential_id=credential_id,
                name=attribute,
                user_provided=spec.user_provided,
                masked=spec.masked,
                value=sealer.seal(spec.value) if spec.value is not None else None,
            )
        )
    record(
        db, actor, "credential.create", target=f"{access.locker.name}/{name}", detail="attributes: " + ", ".join(names)
    )


def credentials_of(db: Connection, access: LockerAccess) -> list[dict[str, Any]]:
    """The credentials ``access`` sees, each with its attributes (names and kinds; never a masked value)."""
    found = []
    rows = db.execute(
        select(credentials).where(credentials.c.locker_id == access.locker.id).order_by(credentials.c.name)
    )
    for row in rows:
        if not access.sees(int(row.owner_id)):
            continue
        mine = {
            r.name
            for r in db.execute(
                select(attribute_values.c.name).where(
                    attribute_values.c.credential_id == row.id, attribute_values.c.user_id == access.user.id
                )
            )
        }
        attrs = [
            {
                "name": a.name,
                "user_provided": a.user_provided,
                "masked": a.masked,
                "has_value": a.value is not None if not a.user_provided else a.name in mine,
            }
            for a in db.execute(
                select(attributes).where(attributes.c.credential_id == row.id).order_by(attributes.c.name)
            )
        ]
        found.append(
            {
                "id": int(row.id),
                "name": row.name,
                "description": row.description,
                "owner_id": int(row.owner_id),
                "attributes": attrs,
                "edits": access.edits(int(row.owner_id)),
            }
        )
    return found


def set_value(
    db: Connection,
    sealer: Sealer,
    access: LockerAccess,
    credential: str,
    attribute: str,
    value: Secret,
    *,
    actor: Actor,
) -> None:
    """A standard attribute's value (who edits the credential), or the user's own user-provided one (anyone
    who sees the credential)."""
    row = db.execute(
        select(credentials).where(credentials.c.locker_id == access.locker.id, credentials.c.name == credential)
    ).first()
    if row is None or not access.sees(int(row.owner_id)):
        raise ConfigError("credential", f"{access.locker.name} has no credential {credential!r}")
    spec = db.execute(
        select(attributes).where(attributes.c.credential_id == row.id, attributes.c.name == attribute)
    ).first()
    if spec is None:
        raise ConfigError("attribute", f"{credential} has no attribute {attribute!r}")
    if spec.user_provided:
        db.execute(
            delete(attribute_values).where(
                attribute_values.c.credential_id == row.id,
                attribute_values.c.name == attribute,
                attribute_values.c.user_id == access.user.id,
            )
        )
        db.execute(
            attribute_values.insert().values(
                credential_id=row.id, name=attribute, user_id=access.user.id, value=sealer.seal(value)
            )
        )
    else:
        if not access.edits(int(row.owner_id)):
            raise PermissionError("only the credential's owner and the locker's owners and managers change it")
        db.execute(
            attributes.update()
            .where(attributes.c.credential_id == row.id, attributes.c.name == attribute)
            .values(value=sealer.seal(value))
        )
    db.execute(credentials.update().where(credentials.c.id == row.id).values(updated_at=time.time()))
    record(
        db,
        actor,
        "credential.value",
        target=f"{access.locker.name}/{credential}/{attribute}",
        detail="user-provided value" if spec.user_provided else "standard value",
    )


def delete_credential(db: Connection, access: LockerAccess, credential: str, *, actor: Actor) -> None:
    row = db.execute(
        select(credentials).where(credentials.c.locker_id == access.locker.id, credentials.c.name == credential)
    ).first()
    if row is None or not access.edits(int(row.owner_id)):
        raise PermissionError("only the credential's owner and the locker's owners and managers delete it")
    db.execute(delete(credentials).where(credentials.c.id == row.id))
    record(db, actor, "credential.delete", target=f"{access.locker.name}/{credential}")


class RunRefusedError(Exception):
    """Why a run may not read a value (the API's answer)."""

    def __init__(self, status: int, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.hint = status, reason, hint


def value_for_run(
    db: Connection,
    sealer: Sealer,
    *,
    locker: str,
    credential: str,
    attribute: str,
    runner_role_ids: frozenset[int],
    user: tuple[int, frozenset[int]] | None,
) -> tuple[Secret, bool]:
    """The value a run of a consumer role may read, and whether it is masked; :class:`RunRefusedError` otherwise."""
    found = get_locker(db, locker)
    if found is None:
        raise RunRefusedError(404, f"there is no locker {locker!r}")
    if not found.consumer_role_ids & runner_role_ids:
        raise RunRefusedError(
            403,
            f"the runner is in no consumer role of locker {found.name!r}",
            "add one of its roles as a consumer on the locker's page",
        )
    row = db.execute(
        select(credentials).where(credentials.c.locker_id == found.id, credentials.c.name == credential.strip().lower())
    ).first()
    if row is None:
        raise RunRefusedError(404, f"locker {found.name!r} has no credential {credential!r}")
    spec = db.execute(
        select(attributes).where(attributes.c.credential_id == row.id, attributes.c.name == attribute.strip().lower())
    ).first()
    if spec is None:
        raise RunRefusedError(404, f"{found.name}/{row.name} has no attribute {attribute!r}")
    if not spec.user_provided:
        if spec.value is None:
            raise RunRefusedError(409, f"{found.name}/{row.name}/{spec.name} has no value yet", "its owner sets it")
        return sealer.open(spec.value), bool(spec.masked)
    if user is None:
        raise RunRefusedError(400, f"{spec.name} is user-provided: say which user the run belongs to", 'send "user"')
    user_id, user_role_ids = user
    if not found.consumer_role_ids & user_role_ids:
        raise RunRefusedError(403, f"the run's user is in no consumer role of locker {found.name!r}")
    value = db.execute(
        select(attribute_values.c.value).where(
            attribute_values.c.credential_id == row.id,
            attribute_values.c.name == spec.name,
            attribute_values.c.user_id == user_id,
        )
    ).scalar()
    if value is None:
        raise RunRefusedError(
            409,
            f"the run's user has not given {found.name}/{row.name}/{spec.name}",
            "they enter it on the locker's page",
        )
    return sealer.open(value), bool(spec.masked)
