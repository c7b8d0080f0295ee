"""The interactive sign-in (consent) of the browser flows: authorization code with PKCE, and implicit.

Order matters: the loopback listener is bound *before* the browser opens (so the
redirect cannot race it), the authorization request carries a fresh ``state`` (and,
for PKCE, an S256 code challenge), the callback is accepted only with that state,
and the code is redeemed with the same redirect URI and the code verifier (the
implicit grant's token arrives in the redirect itself). The tokens go straight
into the vault.
"""

from __future__ import annotations

import os
import secrets
import sys
import webbrowser
from collections.abc import Callable
from typing import TYPE_CHECKING

from postroom.auth.oauth.loopback import LoopbackRedirect
from postroom.auth.oauth.tokens import TokenRecord
from postroom.credentials import ResolveContext
from postroom.logs import get_logger

if TYPE_CHECKING:
    from postroom.auth.oauth.modes import BrowserSignIn

__all__ = ["sign_in", "system_browser"]

_log = get_logger("postroom.auth")


def system_browser(url: str) -> bool:
    """Open ``url`` in the user's graphical browser when this machine has one; False otherwise.

    A console browser (lynx, w3m, ``www-browser``) is never started: it would take
    over the terminal of a bot or an SSH session. On Linux and BSD a display is needed.
    """
    if sys.platform not in {"darwin", "win32"} and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if isinstance(browser, webbrowser.GenericBrowser) and not isinstance(browser, webbrowser.BackgroundBrowser):
        return False  # a console browser runs in the foreground
    return bool(browser.open(url))


def sign_in(
    mode: BrowserSignIn,
    context: ResolveContext,
    *,
    open_browser: Callable[[str], object] | None = None,
    show_url: Callable[[str], object] | None = None,
    timeout: float = 300.0,
) -> TokenRecord:
    """Sign in through the browser and store the tokens; returns the stored record.

    ``open_browser`` opens the URL (default: the system browser, when there is one);
    ``show_url`` tells the user where to go, always, so a headless machine can be
    signed in from another browser that reaches its loopback (e.g. over SSH forwarding);
    without it, the URL goes to stderr when no browser could be opened.
    """
    app = mode.resolved(context)
    client = mode.authorization_flow(app)
    state = secrets.token_urlsafe(32)
    with LoopbackRedirect(
        mode.redirect_uri, state, answer=client.answer, relay_fragment=client.in_fragment
    ) as listener:
        request = client.begin(listener.redirect_uri, state, app.username)
        if show_url is not None:
            show_url(request.url)
        opened = (open_browser or system_browser)(request.url)
        if not opened and show_url is None:
            print(f"Open this address in a browser to sign in:\n\n  {request.url}\n", file=sys.stderr, flush=True)
        callback = listener.wait(timeout)
    response = client.redeem(request, callback)
    record = TokenRecord.from_response(response, fingerprint=app.fingerprint, grant=mode.grant)
    missing = [s for s in client.endpoints.delegated_scopes if record.scopes and s not in record.scopes]
    if missing:
        _log.warning(
            "the sign-in did not grant %s; logins that need it will be refused (granted: %s)",
            " ".join(missing),
            " ".join(record.scopes),
        )
    mode.store(context).save(record)
    _log.info(
        "signed in%s; tokens stored in vault:%s", f" as {record.account}" if record.account else "", mode.token_name
    )
    return record
