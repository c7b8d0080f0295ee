"""Who may call a route: every route is declared with what it needs, and checked here before it runs.

- ``PUBLIC``: anyone (the sign-in page, the health check, static files);
- ``SIGNED_IN``: any signed-in user;
- a tuple of permissions: a signed-in user whose roles grant one of them;
- ``RUNNER``: a runner key (the API; checked by the API itself, which names the reason it refuses).

Every state-changing request of a signed-in user carries the session's CSRF token; the sign-in form
carries a double-submit token from a cookie. A refusal is audited.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from postroom.server import accounts
from postroom.server.accounts import WebSession
from postroom.server.audit import Actor, record
from postroom.server.services import Services

__all__ = ["LOCKER_MEMBER", "PUBLIC", "RUNNER", "SESSION_COOKIE", "SIGNED_IN", "Access", "Page", "client_ip", "guarded"]

SESSION_COOKIE = "postroom_session"
SIGN_IN_CSRF_COOKIE = "postroom_sign_in_csrf"


@dataclass(frozen=True)
class Access:
    name: str
    permissions: tuple[str, ...] = ()


PUBLIC = Access("public")
SIGNED_IN = Access("signed in")
#: Signed in, and then an owner, manager, participant or consumer of the locker (or "Administer all
#: lockers"): the handler checks the membership, which no permission can tell.
LOCKER_MEMBER = Access("locker member")
RUNNER = Access("runner key")


def needs(*permissions: str) -> Access:
    return Access("permission", permissions)


@dataclass
class Page:
    """What a handler gets: the request, the services, and the signed-in session (None on public routes)."""

    request: Request
    services: Services
    session: WebSession | None
    form: dict[str, str]
    #: Every value of fields that repeat (check boxes).
    lists: dict[str, list[str]]

    @property
    def user(self) -> accounts.User:
        assert self.session is not None
        return self.session.user

    @property
    def actor(self) -> Actor:
        return Actor("user", self.session.user.name if self.session else None, client_ip(self.request))


Handler = Callable[[Page], Response]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def guarded(access: Access, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for ``handler``: session, permission and CSRF checked first (in a thread:
    the handlers and the database are synchronous)."""

    async def endpoint(request: Request) -> Response:
        form: dict[str, str] = {}
        lists: dict[str, list[str]] = {}
        if request.method == "POST":
            parsed = await request.form()
            for key, value in parsed.multi_items():
                if isinstance(value, str):
                    form[key] = value
                    lists.setdefault(key, []).append(value)
        return await run_in_threadpool(_run, access, handler, request, form, lists)

    endpoint.access = access  # type: ignore[attr-defined]  # read by the route walk test and the route list
    return endpoint


def _run(
    access: Access, handler: Handler, request: Request, form: dict[str, str], lists: dict[str, list[str]]
) -> Response:
    services: Services = request.app.state.services
    session = None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with services.database.tx() as db:
            session = accounts.session_for(db, cookie)
    page = Page(request, services, session, form, lists)
    if access is PUBLIC:
        return handler(page)
    if session is None:
        if request.method == "GET":
            return RedirectResponse("/sign-in?next=" + _local_path(request), status_code=303)
        return PlainTextResponse("sign in first", status_code=401)
    if access.permissions and not any(session.user.can(p) for p in access.permissions):
        with services.database.tx() as db:
            record(
                db,
                page.actor,
                "permission.refused",
                outcome="refused",
                target=f"{request.method} {request.url.path}",
                detail="needs " + " or ".join(access.permissions),
            )
        return PlainTextResponse("your roles do not allow this page", status_code=403)
    if request.method == "POST" and not hmac.compare_digest(form.get("csrf", ""), session.csrf):
        with services.database.tx() as db:
            record(db, page.actor, "csrf.refused", outcome="refused", target=f"POST {request.url.path}")
        return PlainTextResponse("this form has expired or did not come from this site: reload the page", 403)
    return handler(page)


def _local_path(request: Request) -> str:
    from urllib.parse import quote

    return quote(request.url.path, safe="/")


def csrf_ok(page: Page) -> bool:
    """The public sign-in form's double-submit check."""
    cookie = page.request.cookies.get(SIGN_IN_CSRF_COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie, page.form.get("csrf", ""))


def safe_next(value: str | None) -> str:
    """A redirect target inside this site (never another host)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"
