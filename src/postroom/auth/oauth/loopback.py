"""The loopback redirect listener of the authorization-code flow (RFC 8252 §7.3).

It binds 127.0.0.1 only, on the redirect URI's port (a free one when the URI has
none), answers only ``GET`` on the exact path, and accepts exactly one callback
whose ``state`` matches the one postroom sent (compared in constant time), as a
query (``GET``) or as a form (``POST``, the ``form_post`` response mode). A
callback with a wrong or missing state is refused and logged, and the listener
keeps waiting for the real one, so a forged request can neither sign the bot in
to another account nor cancel the sign-in. Nothing from the query is echoed into
the page, and the code is never logged.

The implicit grant returns its token in the URL *fragment*, which a browser never
sends to a server. For it, a ``GET`` of the callback path without a query is
answered with a small page whose script (the only one it may run, by its
Content-Security-Policy hash) clears the fragment from the address bar and posts
it back as a form; that ``POST`` is then checked like any callback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from postroom.auth.oauth.replies import error_detail
from postroom.errors import AuthorizationDeniedError, ConfigError
from postroom.logs import get_logger

__all__ = ["DEFAULT_REDIRECT_URI", "RELAY_POLICY", "LoopbackRedirect", "check_redirect_uri", "denied"]

DEFAULT_REDIRECT_URI = "http://localhost:8888/Callback"
_log = get_logger("postroom.auth")
_MAX_FORM = 64 * 1024

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>postroom</title></head>
<body style="font-family:sans-serif;margin:3em"><h2>{title}</h2><p>{text}</p></body></html>"""


_RELAY_SCRIPT = """(function () {
  var answer = window.location.hash.substring(1);
  history.replaceState(null, "", window.location.pathname);
  if (!answer) {
    document.getElementById("status").textContent = "This address carries no sign-in response.";
    return;
  }
  var form = document.createElement("form");
  form.method = "post";
  form.action = window.location.pathname;
  new URLSearchParams(answer).forEach(function (value, name) {
    var field = document.createElement("input");
    field.type = "hidden";
    field.name = name;
    field.value = value;
    form.appendChild(field);
  });
  document.body.appendChild(form);
  form.submit();
})();"""
_RELAY_PAGE = f"""<!doctype html><html><head><meta charset="utf-8"><title>postroom</title></head>
<body><h2>Finishing the sign-in</h2><p id="status">Handing the sign-in response to postroom…</p>
<noscript><p>This step needs JavaScript: the response is in this page's address, which only a script
can pass on to postroom.</p></noscript><script>{_RELAY_SCRIPT}</script></body></html>"""
_RELAY_HASH = base64.b64encode(hashlib.sha256(_RELAY_SCRIPT.encode()).digest()).decode()
#: The relay page may run its own script and post a form to this listener, nothing else.
RELAY_POLICY = f"default-src 'none'; script-src 'sha256-{_RELAY_HASH}'; form-action 'self'; base-uri 'none'"


def check_redirect_uri(value: str) -> str:
    """A usable loopback redirect URI, or a :class:`ConfigError` saying why not."""
    parts = urlsplit(value)
    if parts.scheme != "http" or parts.hostname not in {"localhost", "127.0.0.1"}:
        raise ConfigError(
            "redirect_uri",
            f"{value!r} is not a loopback http URI",
            hint=f"use http://localhost:PORT/PATH, e.g. {DEFAULT_REDIRECT_URI}, and register it in the app",
        )
    if parts.query or parts.fragment or parts.username:
        raise ConfigError("redirect_uri", f"{value!r} must not have a query, fragment or user part")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ConfigError("redirect_uri", f"{value!r} has an invalid port") from None
    return value


class LoopbackRedirect:
    """Wait for the browser to come back to the redirect URI. Use as a context manager.

    >>> with LoopbackRedirect("http://localhost:0/Callback", state="s3cr3t") as listener:  # doctest: +SKIP
    ...     open_browser(url_with(listener.redirect_uri))
    ...     params = listener.wait(timeout=300)
    """

    def __init__(
        self, redirect_uri: str, state: str | None = None, *, answer: str = "code", relay_fragment: bool = False
    ) -> None:
        self._parts = urlsplit(check_redirect_uri(redirect_uri))
        self._state = state
        self._answer = answer
        self._relay_fragment = relay_fragment
        self._server: HTTPServer | None = None
        self._result: dict[str, str] | None = None
        #: Callbacks refused because their state did not match (forged or stale).
        self.refused = 0

    @property
    def redirect_uri(self) -> str:
        """The URI to send in the authorization request (with the actual port)."""
        assert self._server is not None, "use LoopbackRedirect as a context manager"
        host = self._parts.hostname or "localhost"
        return urlunsplit(("http", f"{host}:{self._server.server_port}", self._parts.path or "/", "", ""))

    def __enter__(self) -> LoopbackRedirect:
        handler = type("_Handler", (_CallbackHandler,), {"listener": self})
        port = self._parts.port or 0
        try:
            self._server = HTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            raise ConfigError(
                "redirect_uri",
                f"cannot listen on 127.0.0.1:{port} for the sign-in redirect ({exc.strerror or exc})",
                hint="close what uses that port, or pick another port in the redirect URI "
                "(Microsoft ignores the port of a registered http://localhost URI; Google allows any)",
            ) from None
        return self

    def expect(self, state: str, *, answer: str = "code", relay_fragment: bool = False) -> None:
        """The sign-in to accept, once it has begun (its URL needs this listener's redirect URI first)."""
        self._state, self._answer, self._relay_fragment = state, answer, relay_fragment

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.server_close()
            self._server = None

    def wait(self, timeout: float) -> dict[str, str]:
        """The callback's parameters, once a request with the right state arrives."""
        assert self._server is not None, "use LoopbackRedirect as a context manager"
        deadline = time.monotonic() + timeout
        while self._result is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                refused = f"; refused {self.refused} callback(s) with a wrong state" if self.refused else ""
                raise AuthorizationDeniedError(
                    f"no sign-in came back to {self.redirect_uri} within {timeout:g} s{refused}",
                    hint="finish the sign-in in the browser (open the URL printed above), or raise the timeout",
                )
            self._server.timeout = min(remaining, 1.0)
            self._server.handle_request()
        result = self._result
        if "error" in result:
            raise denied(result)
        return result

    # called by the handler ---------------------------------------------------------------

    def _relays(self, path: str, query: str) -> bool:
        """True when this GET is the implicit grant's redirect, whose answer is in the fragment."""
        return self._relay_fragment and not query and path == (self._parts.path or "/") and self._result is None

    def _accept(self, path: str, query: str) -> tuple[int, str, str]:
        """Check one callback (its query or form body); returns the page to answer with."""
        expected_path = self._parts.path or "/"
        if path != expected_path:
            return 404, "Not found", "This address is not postroom's sign-in callback."
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        state = params.get("state", "")
        if self._state is None or not hmac.compare_digest(state.encode(), self._state.encode()):
            self.refused += 1
            _log.warning("refused a sign-in callback whose state does not match the sign-in postroom started")
            return 400, "Sign-in refused", "This response does not belong to the sign-in postroom started."
        if self._result is not None:
            return 400, "Sign-in already done", "This sign-in response was already used."
        if "error" not in params and not params.get(self._answer):
            self.refused += 1
            what = "an access token" if self._answer == "access_token" else "a code"
            return 400, "Sign-in refused", f"The response carries neither {what} nor an error."
        self._result = params
        if "error" in params:
            return 200, "Sign-in not completed", "The sign-in was not completed. See the postroom output for why."
        return 200, "Signed in", "postroom has the authorization. You can close this tab."


class _CallbackHandler(BaseHTTPRequestHandler):
    listener: ClassVar[LoopbackRedirect]
    server_version = "postroom"
    sys_version = ""

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if self.listener._relays(parts.path, parts.query):
            self._send(200, _RELAY_PAGE.encode(), {"Content-Security-Policy": RELAY_POLICY})
            return
        status, title, text = self.listener._accept(parts.path, parts.query)
        self._reply(status, title, text)

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded" or not 0 < length <= _MAX_FORM:
            self._reply(400, "Sign-in refused", "Expected a small form-encoded sign-in response.")
            return
        body = self.rfile.read(length).decode("ascii", "replace")
        status, title, text = self.listener._accept(parts.path, body)
        self._reply(status, title, text)

    def _reply(self, status: int, title: str, text: str) -> None:
        self._send(status, _PAGE.format(title=title, text=text).encode(), {})

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def denied(params: dict[str, str]) -> AuthorizationDeniedError:
    """The error for a redirect that carries ``error`` (declined, or ended by the authorization server)."""
    error = params.get("error", "error")
    detail = error_detail(error, params.get("error_description"))
    if error == "access_denied":
        return AuthorizationDeniedError(
            f"the sign-in was declined ({detail})",
            hint="sign in again and accept the permissions, or ask an admin to grant consent for the app",
            error=error,
        )
    return AuthorizationDeniedError(f"the authorization server ended the sign-in with an error ({detail})", error=error)
