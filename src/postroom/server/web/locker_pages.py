"""The shared credential vault's pages: lockers, their people, credentials and values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.responses import RedirectResponse, Response

from postroom.credentials import Secret
from postroom.errors import ConfigError
from postroom.server import lockers
from postroom.server.audit import record
from postroom.server.store.tables import roles, users
from postroom.server.web.guard import Page
from postroom.server.web.pages import render

__all__ = [
    "credential_create",
    "credential_delete",
    "credential_values",
    "locker_create",
    "locker_people",
    "locker_view",
    "lockers_page",
]

#: Attribute rows on the new-credential form.
FORM_ROWS = 6


def lockers_page(page: Page, *, error: str | None = None) -> Response:
    with page.services.database.tx() as db:
        found = lockers.visible_lockers(db, page.user)
    return render(page, "lockers.html", status=400 if error else 200, rows=found, error=error)


def locker_create(page: Page) -> Response:
    try:
        with page.services.database.tx() as db:
            made = lockers.create_locker(
                db, page.form.get("name", ""), page.form.get("description", ""), user=page.user, actor=page.actor
            )
    except ConfigError as wrong:
        return lockers_page(page, error=str(wrong))
    return RedirectResponse(f"/lockers/{made.name}", status_code=303)


def _access(page: Page) -> lockers.LockerAccess | Response:
    name = page.request.path_params["locker"]
    with page.services.database.tx() as db:
        found = lockers.get_locker(db, name)
        access = lockers.access_for(found, page.user) if found is not None else None
        if access is None:
            record(
                db,
                page.actor,
                "permission.refused",
                outcome="refused",
                target=f"locker {name}",
                detail="not an owner, manager, participant or consumer",
            )
    if access is None:  # the same answer whether it exists or not: names of lockers are not told
        return render(
            page,
            "message.html",
            status=403,
            title="Not allowed",
            message="You are not an owner, manager, participant or consumer of this locker.",
        )
    return access


def locker_view(page: Page, *, error: str | None = None) -> Response:
    access = _access(page)
    if not isinstance(access, lockers.LockerAccess):
        return access
    with page.services.database.tx() as db:
        creds = lockers.credentials_of(db, access)
        people = db.execute(select(users.c.id, users.c.name).order_by(users.c.name)).all()
        all_roles = db.execute(select(roles.c.id, roles.c.name).order_by(roles.c.name)).all()
    return render(
        page,
        "locker.html",
        status=400 if error else 200,
        access=access,
        locker=access.locker,
        credentials=creds,
        people=people,
        roles=all_roles,
        rows=range(FORM_ROWS),
        error=error,
        memberships=lockers.MEMBERSHIPS,
    )


def _ids(page: Page, field: str) -> list[int]:
    return [int(v) for v in page.lists.get(field, []) if v.isdigit()]


def locker_people(page: Page) -> Response:
    access = _access(page)
    if not isinstance(access, lockers.LockerAccess):
        return access
    people: dict[str, Any] = {"owners": None, "managers": None, "participants": None}
    if access.chooses_people:
        people = {key: _ids(page, key) for key in people}
    try:
        with page.services.database.tx() as db:
            lockers.set_people(db, access, consumer_role_ids=_ids(page, "consumers"), actor=page.actor, **people)
    except (ConfigError, PermissionError) as wrong:
        return _refused(page, wrong)
    return RedirectResponse(f"/lockers/{access.locker.name}", status_code=303)


def _refused(page: Page, wrong: Exception) -> Response:
    if isinstance(wrong, PermissionError):
        with page.services.database.tx() as db:
            record(
                db, page.actor, "permission.refused", outcome="refused", target=page.request.url.path, detail=str(wrong)
            )
        return render(page, "message.html", status=403, title="Not allowed", message=str(wrong))
    return locker_view(page, error=str(wrong))


def credential_create(page: Page) -> Response:
    access = _access(page)
    if not isinstance(access, lockers.LockerAccess):
        return access
    specs = []
    for row in range(FORM_ROWS):
        name = page.form.get(f"attr_{row}_name", "").strip()
        if not name:
            continue
        user_provided = page.form.get(f"attr_{row}_kind") == "user"
        value = page.form.get(f"attr_{row}_value", "")
        specs.append(
            lockers.AttributeSpec(
                name,
                user_provided=user_provided,
                masked=bool(page.form.get(f"attr_{row}_masked")),
                value=Secret(value) if value and not user_provided else None,
            )
        )
    try:
        with page.services.database.tx() as db:
            lockers.create_credential(
                db,
                page.services.sealer,
                access,
                page.form.get("name", ""),
                page.form.get("description", ""),
                specs,
                actor=page.actor,
            )
    except (ConfigError, PermissionError) as wrong:
        return _refused(page, wrong)
    return RedirectResponse(f"/lockers/{access.locker.name}", status_code=303)


def credential_values(page: Page) -> Response:
    access = _access(page)
    if not isinstance(access, lockers.LockerAccess):
        return access
    credential = page.request.path_params["credential"]
    try:
        with page.services.database.tx() as db:
            for key, value in page.form.items():
                if key.startswith("value_") and value:
                    lockers.set_value(
                        db,
                        page.services.sealer,
                        access,
                        credential,
                        key.removeprefix("value_"),
                        Secret(value),
                        actor=page.actor,
                    )
    except (ConfigError, PermissionError) as wrong:
        return _refused(page, wrong)
    return RedirectResponse(f"/lockers/{access.locker.name}", status_code=303)


def credential_delete(page: Page) -> Response:
    access = _access(page)
    if not isinstance(access, lockers.LockerAccess):
        return access
    try:
        with page.services.database.tx() as db:
            lockers.delete_credential(db, access, page.request.path_params["credential"], actor=page.actor)
    except PermissionError as wrong:
        return _refused(page, wrong)
    return RedirectResponse(f"/lockers/{access.locker.name}", status_code=303)
