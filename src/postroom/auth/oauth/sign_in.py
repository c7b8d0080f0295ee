"""The interactive sign-in (consent) of the browser flows, in two phases: begin, then complete.

:func:`begin_sign_in` resolves the app, makes a fresh ``state`` (and, for PKCE, an
S256 code challenge) and returns the URL to open with a :class:`PendingSignIn`;
:func:`complete_sign_in` takes what the browser's redirect carried, accepts it only
with that state, redeems the code with the same redirect URI and the code verifier
(the implicit grant's token arrives in the redirect itself) and stores the tokens in
the mode's token store. Whatever receives the redirect drives the two: the loopback
listener here (:func:`sign_in`, bound *before* the browser opens so the redirect
cannot race it), or a web service's callback route.
"""

from __future__ import annotations

import hmac
import os
import secrets
import sys
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from postroom.auth.oauth.clients import AuthorizationFlow, AuthorizationRequest, ResolvedApp
from postroom.auth.oauth.loopback import LoopbackRedirect, denied
from postroom.auth.oauth.tokens import TokenRecord, TokenStore
from postroom.credentials import ResolveContext
from postroom.errors import AuthorizationDeniedError
from postroom.logs import get_logger


class SignInMode(Protocol):
    """A mode whose tokens come from a user signing in in a browser (``OAuth2PKCE``, ``OAuth2Implicit``)."""

    grant: str
    redirect_uri: str

    def resolved(self, context: ResolveContext) -> ResolvedApp: ...

    def authorization_flow(self, app: ResolvedApp) -> AuthorizationFlow: ...

    def store(self, context: ResolveContext) -> TokenStore: ...


__all__ = ["PendingSignIn", "SignInMode", "begin_sign_in", "complete_sign_in", "sign_in", "system_browser"]

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


@dataclass
class PendingSignIn:
    """A sign-in begun and not yet completed: the URL for the user, and what completing it needs (never shown)."""

    #: The authorization URL to open in a browser.
    url: str
    #: The redirect URI the authorization server will come back to.
    redirect_uri: str
    #: The parameter a successful redirect carries (``code``, or ``access_token`` for implicit).
    answer: str
    #: True when the redirect carries it in the URL fragment (implicit), which a browser never sends to a server.
    in_fragment: bool
    mode: SignInMode = field(repr=False)
    context: ResolveContext = field(repr=False)
    app: ResolvedApp = field(repr=False)
    flow: AuthorizationFlow = field(repr=False)
    request: AuthorizationRequest = field(repr=False)

    @property
    def state(self) -> str:
        """The ``state`` the redirect must carry back (a secret of this sign-in)."""
        return self.request.state


def begin_sign_in(mode: SignInMode, context: ResolveContext, *, redirect_uri: str | None = None) -> PendingSignIn:
    """Start a sign-in: resolve the app, choose a fresh state, build the authorization URL.

    ``redirect_uri`` is where the receiver of the redirect listens (default: the mode's).
    """
    app = mode.resolved(context)
    flow = mode.authorization_flow(app)
    state = secrets.token_urlsafe(32)
    where = redirect_uri or mode.redirect_uri
    request = flow.begin(where, state, app.username)
    return PendingSignIn(request.url, where, flow.answer, flow.in_fragment, mode, context, app, flow, request)


def complete_sign_in(pending: PendingSignIn, callback: Mapping[str, str]) -> TokenRecord:
    """Finish ``pending`` with the redirect's parameters; store and return the tokens.

    A callback whose ``state`` is not this sign-in's is refused (forged, or another
    sign-in's); an ``error`` from the authorization server ends the sign-in, named.
    """
    state = str(callback.get("state", ""))
    if not hmac.compare_digest(state.encode(), pending.state.encode()):
        raise AuthorizationDeniedError(
            "the sign-in response does not belong to this sign-in (its state does not match)",
            hint="start the sign-in again from the same place, and finish it in the browser it opened",
        )
    if "error" in callback:
        raise denied(dict(callback))
    if not callback.get(pending.answer):
        what = "an access token" if pending.answer == "access_token" else "a code"
        raise AuthorizationDeniedError(f"the sign-in response carries neither {what} nor an error")
    response = pending.flow.redeem(pending.request, callback)
    record = TokenRecord.from_response(response, fingerprint=pending.app.fingerprint, grant=pending.mode.grant)
    missing = [s for s in pending.flow.endpoints.delegated_scopes if record.scopes and s not in record.scopes]
    if missing:
        _log.warning(
            "the sign-in did not grant %s; logins that need it will be refused (granted: %s)",
            " ".join(missing),
            " ".join(record.scopes),
        )
    store = pending.mode.store(pending.context)
    store.save(record)
    _log.info("signed in%s; tokens stored in %r", f" as {record.account}" if record.account else "", store)
    return record


def sign_in(
    mode: SignInMode,
    context: ResolveContext,
    *,
    open_browser: Callable[[str], object] | None = None,
    show_url: Callable[[str], object] | None = None,
    timeout: float = 300.0,
) -> TokenRecord:
    """Sign in through the browser and the loopback redirect; returns the stored record.

    ``open_browser`` opens the URL (default: the system browser, when there is one);
    ``show_url`` tells the user where to go, always, so a headless machine can be
    signed in from another browser that reaches its loopback (e.g. over SSH forwarding);
    without it, the URL goes to stderr when no browser could be opened.
    """
    with LoopbackRedirect(mode.redirect_uri) as listener:
        pending = begin_sign_in(mode, context, redirect_uri=listener.redirect_uri)
        listener.expect(pending.state, answer=pending.answer, relay_fragment=pending.in_fragment)
        if show_url is not None:
            show_url(pending.url)
        opened = (open_browser or system_browser)(pending.url)
        if not opened and show_url is None:
            print(f"Open this address in a browser to sign in:\n\n  {pending.url}\n", file=sys.stderr, flush=True)
        callback = listener.wait(timeout)
    return complete_sign_in(pending, callback)
