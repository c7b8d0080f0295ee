"""The web UI's pages: sign-in, connections, My connections, runners, users and roles, audit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from starlette.responses import HTMLResponse, RedirectResponse, Response

from postroom.credentials import Secret
from postroom.errors import ConfigError, PostroomError
from postroom.server import accounts, runners, sign_in
from postroom.server.audit import AuditFilter, record, search
from postroom.server.connection_test import SECURITIES, TestTarget, run_test
from postroom.server.connections import (
    GRANTS,
    PROTOCOLS,
    PROVIDERS,
    TOKEN_TYPES,
    ConnectionSpec,
    StoredConnection,
    delete_connection,
    get_connection,
    list_connections,
    save_connection,
)
from postroom.server.permissions import PERMISSIONS, Permission
from postroom.server.sealing import random_token
from postroom.server.store.tables import role_permissions, roles, runner_roles, user_roles, users
from postroom.server.store.tables import runners as runner_rows
from postroom.server.tokens import SHARED, TokenUnavailableError, user_principal
from postroom.server.web.guard import SESSION_COOKIE, SIGN_IN_CSRF_COOKIE, Page, csrf_ok, safe_next

__all__ = ["render"]

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["when"] = lambda at: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else ""


def render(page: Page, template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    user = page.session.user if page.session else None
    html = _templates.get_template(template).render(
        user=user,
        csrf=page.session.csrf if page.session else "",
        can=(lambda p: user is not None and user.can(p)),
        P=Permission,
        public_base_url=page.services.settings.public_base_url,
        **context,
    )
    return HTMLResponse(html, status_code=status)


def _see(path: str, **query: str) -> RedirectResponse:
    return RedirectResponse(path + ("?" + urlencode(query) if query else ""), status_code=303)


# -- signing in to the UI ---------------------------------------------------------------------------------


def sign_in_page(page: Page) -> Response:
    token = random_token()
    response = render(page, "sign_in.html", sign_in_csrf=token, next=safe_next(page.request.query_params.get("next")))
    _cookie(page, response, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
    return response


def sign_in_post(page: Page) -> Response:
    target = safe_next(page.form.get("next"))
    if not csrf_ok(page):
        return sign_in_page_with(page, "the form expired: try again", 400)
    try:
        cookie, _session = accounts.sign_in(
            page.services.database, page.form.get("name", ""), page.form.get("password", ""), ip=page.actor.ip
        )
    except accounts.SignInRefusedError as refused:
        return sign_in_page_with(page, str(refused), 429 if refused.too_many else 401)
    response = RedirectResponse(target, status_code=303)
    _cookie(page, response, SESSION_COOKIE, cookie, max_age=accounts.SESSION_SECONDS)
    response.delete_cookie(SIGN_IN_CSRF_COOKIE, path="/")
    return response


def sign_in_page_with(page: Page, error: str, status: int) -> Response:
    token = random_token()
    response = render(page, "sign_in.html", status=status, error=error, sign_in_csrf=token, next=page.form.get("next"))
    _cookie(page, response, SIGN_IN_CSRF_COOKIE, token, max_age=3600)
    return response


def sign_out(page: Page) -> Response:
    assert page.session is not None
    with page.services.database.tx() as db:
        accounts.sign_out(db, page.session, ip=page.actor.ip)
    response = _see("/sign-in")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _cookie(page: Page, response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=page.services.settings.secure_cookies,
    )


def home(page: Page) -> Response:
    if page.user.can(Permission.VIEW_CONNECTIONS) or page.user.can(Permission.MANAGE_CONNECTIONS):
        return _see("/connections")
    return _see("/my/connections")


# -- connections ------------------------------------------------------------------------------------------


def _roles(page: Page) -> list[Any]:
    with page.services.database.tx() as db:
        return list(db.execute(select(roles).order_by(roles.c.name)).all())


def _connection_or_404(page: Page) -> StoredConnection | Response:
    name = page.request.path_params["name"]
    with page.services.database.tx() as db:
        found = get_connection(db, page.services.sealer, name)
    if found is None:
        return render(page, "message.html", status=404, title="Not found", message=f"There is no connection {name!r}.")
    return found


def connections_list(page: Page) -> Response:
    services = page.services
    with services.database.tx() as db:
        found = list_connections(db, services.sealer)
        rows = [(c, services.tokens.status(db, c, SHARED) if c.spec.token_type == "shared" else None) for c in found]
    return render(page, "connections.html", rows=rows, PROVIDERS=PROVIDERS, TOKEN_TYPES=TOKEN_TYPES, GRANTS=GRANTS)


def _spec_from_form(page: Page, *, editing: StoredConnection | None) -> ConnectionSpec:
    form = page.form
    secret = form.get("client_secret", "")
    return ConnectionSpec(
        name=form.get("name", "").strip() if editing is None else editing.name,
        provider=form.get("provider", ""),
        grant=form.get("grant", ""),
        client_id=form.get("client_id", "").strip(),
        token_type=form.get("token_type", ""),
        protocols=tuple(p for p in PROTOCOLS if p in page.lists.get("protocols", [])),
        client_secret=Secret(secret) if secret else (editing.spec.client_secret if editing else None),
        tenant=form.get("tenant", "").strip(),
        cloud=form.get("cloud", "global") or "global",
        authority=form.get("authority", "").strip(),
        authorize_url=form.get("authorize_url", "").strip(),
        token_url=form.get("token_url", "").strip(),
        scopes=tuple(form.get("scopes", "").replace(",", " ").split()),
    )


def _form_page(page: Page, editing: StoredConnection | None, *, error: ConfigError | None = None) -> Response:
    values: dict[str, Any]
    if page.request.method == "POST":
        values = {k: v for k, v in page.form.items() if k != "client_secret"}
        values["protocols"] = page.lists.get("protocols", [])
        values["roles"] = [int(r) for r in page.lists.get("roles", []) if r.isdigit()]
    elif editing is not None:
        spec = editing.spec
        values = {
            "name": spec.name,
            "provider": spec.provider,
            "grant": spec.grant,
            "client_id": spec.client_id,
            "token_type": spec.token_type,
            "protocols": list(spec.protocols),
            "tenant": spec.tenant,
            "cloud": spec.cloud,
            "authority": spec.authority,
            "authorize_url": spec.authorize_url,
            "token_url": spec.token_url,
            "scopes": " ".join(spec.scopes),
            "roles": sorted(editing.invited_role_ids),
            "version": editing.version,
        }
    else:
        values = {
            "provider": "microsoft365",
            "grant": "authorization_code_pkce",
            "token_type": "shared",
            "protocols": ["imap", "smtp"],
            "cloud": "global",
            "roles": [],
        }
    return render(
        page,
        "connection_form.html",
        status=400 if error else 200,
        editing=editing,
        values=values,
        error=error,
        has_secret=bool(editing and editing.spec.client_secret),
        roles=_roles(page),
        PROVIDERS=PROVIDERS,
        GRANTS=GRANTS,
        TOKEN_TYPES=TOKEN_TYPES,
        PROTOCOLS=PROTOCOLS,
        callback_url=page.services.settings.callback_url,
    )


def connection_new(page: Page) -> Response:
    if page.request.method == "GET":
        return _form_page(page, None)
    try:
        spec = _spec_from_form(page, editing=None)
        with page.services.database.tx() as db:
            saved = save_connection(db, page.services.sealer, spec, invited_role_ids=_role_ids(page), actor=page.actor)
    except ConfigError as wrong:
        return _form_page(page, None, error=wrong)
    return _see(f"/connections/{saved.name}", saved="1")


def connection_edit(page: Page) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    if page.request.method == "GET":
        return _form_page(page, found)
    try:
        spec = _spec_from_form(page, editing=found)
        version = int(page.form.get("version") or found.version)
        with page.services.database.tx() as db:
            save_connection(
                db,
                page.services.sealer,
                spec,
                invited_role_ids=_role_ids(page),
                actor=page.actor,
                existing=found,
                expected_version=version,
            )
    except ConfigError as wrong:
        return _form_page(page, found, error=wrong)
    return _see(f"/connections/{found.name}", saved="1")


def _role_ids(page: Page) -> list[int]:
    return [int(r) for r in page.lists.get("roles", []) if r.isdigit()]


def connection_view(page: Page, *, outcome: Any = None, error: str | None = None) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    services = page.services
    with services.database.tx() as db:
        shared = services.tokens.status(db, found, SHARED) if found.spec.token_type == "shared" else None
        invited = db.execute(select(roles.c.name).where(roles.c.id.in_(found.invited_role_ids))).scalars().all()
    return render(
        page,
        "connection.html",
        status=400 if error else 200,
        connection=found,
        shared=shared,
        invited=sorted(invited),
        callback_url=services.settings.callback_url,
        outcome=outcome,
        error=error or page.request.query_params.get("error"),
        saved=page.request.query_params.get("saved"),
        signed_in=page.request.query_params.get("signed_in"),
        PROVIDERS=PROVIDERS,
        GRANTS=GRANTS,
        TOKEN_TYPES=TOKEN_TYPES,
        PROTOCOLS=PROTOCOLS,
        SECURITIES=SECURITIES,
        tested=page.form if outcome is not None or error else {},
    )


def connection_delete(page: Page) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    with page.services.database.tx() as db:
        delete_connection(db, found, actor=page.actor)
    return _see("/connections")


def _begin(page: Page, found: StoredConnection, principal: str, back: str) -> Response:
    services = page.services
    assert page.session is not None
    if found.spec.grant == "client_credentials":
        return _see(back, error="client credentials need no sign-in: the service asks for tokens itself")
    try:
        url = sign_in.begin(
            services.database,
            services.sealer,
            found,
            services.client_for(found),
            principal=principal,
            session=page.session,
            redirect_uri=services.settings.callback_url,
            ip=page.actor.ip,
        )
    except PostroomError as failed:
        return _see(back, error=str(failed))
    return RedirectResponse(url, status_code=303)


def connection_sign_in(page: Page) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    if found.spec.token_type != "shared":
        return _see(
            f"/connections/{found.name}", error="a user-specific connection: each user signs in under My connections"
        )
    return _begin(page, found, SHARED, f"/connections/{found.name}")


def connection_revoke(page: Page) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    with page.services.database.tx() as db:
        page.services.tokens.revoke(db, found, SHARED, actor=page.actor)
    return _see(f"/connections/{found.name}")


def connection_test(page: Page) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    services = page.services
    principal = SHARED if found.spec.token_type == "shared" else user_principal(page.user.id)
    form = page.form
    port_text = form.get("port", "").strip()
    if port_text and not port_text.isdigit():
        return connection_view(page, error="port: not a number (leave it empty for the protocol's port)")
    try:
        target = TestTarget(
            protocol=form.get("protocol", "imap"),
            host=form.get("host", ""),
            port=int(port_text) if port_text else None,
            security=form.get("security", "ssl"),
            mailbox=form.get("mailbox", ""),
        )
        with services.database.tx() as db:
            row = services.tokens.row(db, found, principal)
        outcome = run_test(
            services.tokens,
            found,
            principal,
            target,
            ca_file=services.settings.ca_file,
            granted_scopes=tuple((row.scopes or "").split()) if row is not None else (),
        )
    except (TokenUnavailableError, PostroomError) as failed:
        return connection_view(page, error=str(failed))
    with services.database.tx() as db:
        record(
            db,
            page.actor,
            "connection.test",
            outcome="ok" if outcome.ok else "failed",
            connection=found.name,
            principal=principal,
            detail=outcome.summary,
        )
    return connection_view(page, outcome=outcome)


# -- My connections (user-specific tokens) ----------------------------------------------------------------


def _invited(found: StoredConnection, page: Page) -> bool:
    return bool(found.invited_role_ids & page.user.role_ids)


def my_connections(page: Page) -> Response:
    services = page.services
    with services.database.tx() as db:
        mine = [c for c in list_connections(db, services.sealer) if c.spec.token_type == "user" and _invited(c, page)]
        rows = [(c, services.tokens.status(db, c, user_principal(page.user.id))) for c in mine]
    return render(
        page,
        "my_connections.html",
        rows=rows,
        PROVIDERS=PROVIDERS,
        error=page.request.query_params.get("error"),
        signed_in=page.request.query_params.get("signed_in"),
    )


def my_connection_sign_in(page: Page) -> Response:
    found = _connection_or_404(page)
    if not isinstance(found, StoredConnection):
        return found
    if found.spec.token_type != "user" or not _invited(found, page):
        with page.services.database.tx() as db:
            record(
                db,
                page.actor,
                "permission.refused",
                outcome="refused",
                connection=found.name,
                detail="not invited to this user-specific connection",
            )
        return render(
            page,
            "message.html",
            status=403,
            title="Not invited",
            message="Your roles are not invited to this connection.",
        )
    return _begin(page, found, user_principal(page.user.id), "/my/connections")


# -- the OAuth callback -----------------------------------------------------------------------------------


def oauth_callback(page: Page) -> Response:
    services = page.services
    params = dict(page.request.query_params) if page.request.method == "GET" else dict(page.form)
    if page.session is None:
        if page.request.method == "POST" and "state" in params:
            # A form_post from the identity provider is a cross-site POST: the browser did not send the
            # session cookie (SameSite=Lax). The relay page posts the same fields again, same-site.
            return render(page, "relay.html", fields=params)
        return _see("/sign-in")
    with services.database.tx() as db:
        connection_id = sign_in.pending_connection(db, services.sealer, str(params.get("state", "")))
        found = None
        if connection_id is not None:
            found = next((c for c in list_connections(db, services.sealer) if c.id == connection_id), None)
    if found is None:
        with services.database.tx() as db:
            record(db, page.actor, "sign_in.callback", outcome="refused", detail="unknown, used or forged state")
        return render(
            page,
            "message.html",
            status=400,
            title="Sign-in refused",
            message="This sign-in is unknown, was used already, or was not started here. Start it again.",
        )
    back = f"/connections/{found.name}" if found.spec.token_type == "shared" else "/my/connections"
    try:
        _principal, stored = sign_in.complete(
            services.database,
            services.sealer,
            services.tokens,
            found,
            services.client_for(found),
            params,
            session=page.session,
            ip=page.actor.ip,
        )
    except PostroomError as failed:  # audited by complete()
        return render(page, "message.html", status=400, title="Sign-in refused", message=str(failed), back=back)
    return _see(back, signed_in=stored.account or "yes")


# -- runners ----------------------------------------------------------------------------------------------


def runners_page(page: Page, *, new_key: Secret | None = None, error: str | None = None) -> Response:
    with page.services.database.tx() as db:
        rows = db.execute(select(runner_rows).order_by(runner_rows.c.name)).all()
        links = db.execute(select(runner_roles.c.runner_id, roles.c.name).join(roles)).all()
    role_names: dict[int, list[str]] = {}
    for runner_id, name in links:
        role_names.setdefault(runner_id, []).append(name)
    return render(
        page,
        "runners.html",
        status=400 if error else 200,
        rows=rows,
        role_names=role_names,
        roles=_roles(page),
        new_key=new_key.reveal() if new_key else None,
        error=error,
    )


def runner_create(page: Page) -> Response:
    try:
        with page.services.database.tx() as db:
            key = runners.create_runner(
                db, page.form.get("name", "").strip(), role_ids=_role_ids(page), actor=page.actor
            )
    except ConfigError as wrong:
        return runners_page(page, error=str(wrong))
    return runners_page(page, new_key=key)


def runner_revoke(page: Page) -> Response:
    try:
        with page.services.database.tx() as db:
            runners.revoke_runner(db, int(page.request.path_params["runner_id"]), actor=page.actor)
    except (ConfigError, ValueError) as wrong:
        return runners_page(page, error=str(wrong))
    return _see("/runners")


# -- users and roles --------------------------------------------------------------------------------------


def users_page(page: Page, *, error: str | None = None) -> Response:
    with page.services.database.tx() as db:
        rows = db.execute(select(users).order_by(users.c.name)).all()
        links = db.execute(select(user_roles.c.user_id, user_roles.c.role_id)).all()
        granted = db.execute(select(role_permissions)).all()
    of_user: dict[int, set[int]] = {}
    for user_id, role_id in links:
        of_user.setdefault(user_id, set()).add(role_id)
    permissions: dict[int, list[str]] = {}
    for role_id, permission in granted:
        permissions.setdefault(role_id, []).append(PERMISSIONS.get(permission, permission))
    return render(
        page,
        "users.html",
        status=400 if error else 200,
        rows=rows,
        of_user=of_user,
        roles=_roles(page),
        permissions=permissions,
        error=error,
    )


def user_create(page: Page) -> Response:
    try:
        with page.services.database.tx() as db:
            names = db.execute(select(roles.c.name).where(roles.c.id.in_(_role_ids(page)))).scalars().all()
            accounts.create_user(
                db,
                page.form.get("name", ""),
                page.form.get("password", ""),
                role_names=names,
                actor=page.actor,
                display_name=page.form.get("display_name", ""),
            )
    except ConfigError as wrong:
        return users_page(page, error=str(wrong))
    return _see("/users")


def user_roles_post(page: Page) -> Response:
    try:
        with page.services.database.tx() as db:
            accounts.set_user_roles(db, int(page.request.path_params["user_id"]), _role_ids(page), actor=page.actor)
    except ValueError as wrong:
        return users_page(page, error=str(wrong))
    return _see("/users")


# -- audit ------------------------------------------------------------------------------------------------


def audit_page(page: Page) -> Response:
    query = page.request.query_params
    where = AuditFilter(
        action=query.get("action") or None,
        actor=query.get("actor") or None,
        connection=query.get("connection") or None,
        outcome=query.get("outcome") or None,
    )
    with page.services.database.tx() as db:
        rows = search(db, where)
    return render(page, "audit.html", rows=rows, where=where)
