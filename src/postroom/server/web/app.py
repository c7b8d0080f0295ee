"""The ASGI application: every route with who may call it, security headers on every answer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postroom.logs import get_logger
from postroom.server.permissions import Permission
from postroom.server.services import Services
from postroom.server.settings import ServerSettings
from postroom.server.web import api, locker_pages, pages
from postroom.server.web.guard import LOCKER_MEMBER, PUBLIC, SIGNED_IN, Access, guarded, needs

__all__ = ["ROUTES", "create_app"]

_log = get_logger("postroom.server")

_CONNECTIONS_VIEW = needs(Permission.VIEW_CONNECTIONS, Permission.MANAGE_CONNECTIONS)
_CONNECTIONS_MANAGE = needs(Permission.MANAGE_CONNECTIONS)
_ADMIN = needs(Permission.ADMINISTER_USERS)

#: (path, methods, handler, who may call it): the one list of the UI's routes.
ROUTES: list[tuple[str, list[str], Callable[..., Response], Access]] = [
    ("/sign-in", ["GET"], pages.sign_in_page, PUBLIC),
    ("/sign-in", ["POST"], pages.sign_in_post, PUBLIC),
    ("/sign-out", ["POST"], pages.sign_out, SIGNED_IN),
    ("/", ["GET"], pages.home, SIGNED_IN),
    ("/connections", ["GET"], pages.connections_list, _CONNECTIONS_VIEW),
    ("/connections/new", ["GET", "POST"], pages.connection_new, _CONNECTIONS_MANAGE),
    ("/connections/{name}", ["GET"], pages.connection_view, _CONNECTIONS_VIEW),
    ("/connections/{name}/edit", ["GET", "POST"], pages.connection_edit, _CONNECTIONS_MANAGE),
    ("/connections/{name}/delete", ["POST"], pages.connection_delete, _CONNECTIONS_MANAGE),
    ("/connections/{name}/sign-in", ["POST"], pages.connection_sign_in, _CONNECTIONS_MANAGE),
    ("/connections/{name}/revoke", ["POST"], pages.connection_revoke, _CONNECTIONS_MANAGE),
    ("/connections/{name}/test", ["POST"], pages.connection_test, _CONNECTIONS_MANAGE),
    ("/my/connections", ["GET"], pages.my_connections, SIGNED_IN),
    ("/my/connections/{name}/sign-in", ["POST"], pages.my_connection_sign_in, SIGNED_IN),
    # the session is checked by the handler: a form_post callback arrives without the cookie
    ("/oauth/callback", ["GET", "POST"], pages.oauth_callback, PUBLIC),
    ("/runners", ["GET"], pages.runners_page, _ADMIN),
    ("/runners", ["POST"], pages.runner_create, _ADMIN),
    ("/runners/{runner_id:int}/revoke", ["POST"], pages.runner_revoke, _ADMIN),
    ("/users", ["GET"], pages.users_page, _ADMIN),
    ("/users", ["POST"], pages.user_create, _ADMIN),
    ("/users/{user_id:int}/roles", ["POST"], pages.user_roles_post, _ADMIN),
    ("/audit", ["GET"], pages.audit_page, needs(Permission.VIEW_AUDIT)),
    # lockers: a signed-in user sees those they belong to (or consume); the handlers check the membership
    ("/lockers", ["GET"], locker_pages.lockers_page, SIGNED_IN),
    ("/lockers", ["POST"], locker_pages.locker_create, needs(Permission.MANAGE_CREDENTIALS)),
    ("/lockers/{locker}", ["GET"], locker_pages.locker_view, LOCKER_MEMBER),
    ("/lockers/{locker}/people", ["POST"], locker_pages.locker_people, LOCKER_MEMBER),
    ("/lockers/{locker}/credentials", ["POST"], locker_pages.credential_create, LOCKER_MEMBER),
    ("/lockers/{locker}/credentials/{credential}/values", ["POST"], locker_pages.credential_values, LOCKER_MEMBER),
    ("/lockers/{locker}/credentials/{credential}/delete", ["POST"], locker_pages.credential_delete, LOCKER_MEMBER),
]

#: Every answer: no framing, no inline script or style, no referrer (the callback's URL carries a code).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class _SecurityHeaders:
    """Every answer's security headers (and ``no-store`` but for static files), as plain ASGI: Starlette's
    ``BaseHTTPMiddleware`` runs each request through an extra task and streams, a third of a token answer's
    time in the bench."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        headers = dict(SECURITY_HEADERS)
        if https:
            headers["Strict-Transport-Security"] = "max-age=31536000"
        self._headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        added = self._headers if static else [*self._headers, (b"cache-control", b"no-store")]
        replaced = {name for name, _ in added}

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(n, v) for n, v in message.get("headers", []) if n.lower() not in replaced]
                message = {**message, "headers": kept + added}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(settings: ServerSettings | None = None, *, services: Services | None = None) -> Starlette:
    """The application for ``settings`` (default: from the environment); migrates the database on start."""
    services = services or Services.start(settings or ServerSettings.load())
    routes: list[BaseRoute] = [
        Route(path, guarded(access, handler), methods=methods) for path, methods, handler, access in ROUTES
    ]
    routes += [
        Route("/api/v1/connections/{name}/token", api.token, methods=["POST"]),
        Route("/api/v1/lockers/{locker}/credentials/{credential}/{attribute}", api.credential, methods=["POST"]),
        Route("/api/v1/health", api.health, methods=["GET"]),
        Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        keeper = threading.Thread(target=_keep_alive, args=(services, stop), name="token-keepalive", daemon=True)
        keeper.start()
        yield
        stop.set()
        keeper.join(5)
        services.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(_SecurityHeaders, https=services.settings.secure_cookies)],
        lifespan=lifespan,
    )
    app.state.services = services
    return app


def _keep_alive(services: Services, stop: threading.Event) -> None:
    """Every ``keepalive_interval``: refresh the refresh tokens nobody used for a week."""
    from postroom.server.connections import list_connections

    while not stop.wait(services.settings.keepalive_interval):
        try:
            with services.database.tx() as db:
                found = list_connections(db, services.sealer)
            refreshed = services.tokens.keep_alive(found)
            if refreshed:
                _log.info("keep-alive: refreshed %d idle refresh token(s)", refreshed)
        except Exception:  # the loop must outlive a database or provider outage
            _log.exception("keep-alive refresh failed; trying again in %s s", services.settings.keepalive_interval)
