"""Asking a ``postroom server`` for what a run needs, with the runner's key: one JSON POST, retried while
the server restarts (a restart costs a run a retried request, nothing more)."""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from postroom.credentials.secret import Secret
from postroom.errors import ConfigError, ServerUnreachableError

if TYPE_CHECKING:
    import httpx

__all__ = ["RESTART_GRACE", "TIMEOUT", "ask_server", "checked_server_url"]

#: Seconds to wait for the server's answer.
TIMEOUT = 30.0
#: How long a server that cannot be reached (restarting) is asked again before the caller gives up.
RESTART_GRACE = 60.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
#: One HTTP client per (process, CA file): its TLS context and kept-alive connections serve every
#: request of the process (a context costs milliseconds to build). Keyed by process so that a forked
#: worker never shares its parent's sockets.
_clients: dict[tuple[int, str | None], httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(ca_file: str | None) -> httpx.Client:
    import httpx

    key = (os.getpid(), ca_file)
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=64)
            found = _clients[key] = httpx.Client(verify=ca_file or True, timeout=TIMEOUT, limits=limits)
        return found


def checked_server_url(url: str) -> str:
    if not url:
        raise ConfigError(
            "server", "the postroom server's address is needed", hint="give server= or set POSTROOM_SERVER_URL"
        )
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigError("server", f"{url!r} is not an http(s) URL", hint="e.g. https://postroom.example.com")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ConfigError(
            "server",
            f"plain http to {parts.hostname} would send tokens in the clear",
            hint="use the server's https:// address",
        )
    return url.rstrip("/")


def ask_server(
    server: str, runner_key: Secret, path: str, body: dict[str, Any], *, ca_file: str | None = None
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to ``server + path``; the status and the JSON answer (``{}`` when it is not JSON)."""
    import httpx

    headers = {"Authorization": f"Bearer {runner_key.reveal()}"}
    client = _client(ca_file)
    deadline = time.monotonic() + RESTART_GRACE
    pause = 0.25
    while True:
        try:
            reply = client.post(server + path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            if time.monotonic() + pause > deadline:
                raise ServerUnreachableError(
                    f"cannot reach the postroom server at {server} ({type(exc).__name__})",
                    hint="check the server address (server= or POSTROOM_SERVER_URL) and that it runs",
                ) from None
        else:
            if reply.status_code not in {502, 503, 504} or time.monotonic() + pause > deadline:
                break
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
    try:
        answer = reply.json()
    except ValueError:
        answer = {}
    return reply.status_code, answer if isinstance(answer, dict) else {}
