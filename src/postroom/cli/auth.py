"""``postroom auth login|status|logout``: the OAuth2 sign-in of a saved profile, and what it holds."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import click

from postroom.auth import OAuth2ClientCredentials
from postroom.auth.oauth.endpoints import OAuthEndpoints
from postroom.auth.oauth.modes import BrowserSignIn
from postroom.auth.oauth.tokens import TokenRecord
from postroom.cli.common import profile_name
from postroom.cli.output import emit, handle_errors, json_option, state
from postroom.errors import ConfigError, ConsentRequiredError
from postroom.profiles import ProfileStore
from postroom.session import current_runtime

__all__ = ["auth_group"]

OAuthMode = BrowserSignIn | OAuth2ClientCredentials


def _oauth_profile(name: str) -> OAuthMode:
    auth = ProfileStore().load(name).auth
    if not isinstance(auth, BrowserSignIn | OAuth2ClientCredentials):
        raise ConfigError(
            "auth",
            f"profile {name!r} uses {auth.kind!r}, not OAuth2",
            hint=f"save it with `postroom connect {name} --auth oauth2-pkce ...`",
        )
    return auth


@click.group("auth")
def auth_group() -> None:
    """OAuth2 sign-in for a saved profile: login (consent), status, logout."""


@auth_group.command("login")
@click.option(
    "--no-browser",
    is_flag=True,
    help="Only print the sign-in URL (open it on any browser that reaches "
    "this machine's loopback, e.g. through SSH port forwarding).",
)
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds to wait for the browser.")
@json_option
@handle_errors
@profile_name
def auth_login(name: str, no_browser: bool, timeout: float, as_json: bool) -> None:
    """Sign in for profile NAME and store its tokens, encrypted, in the credential vault.

    PKCE and implicit: opens the provider's sign-in page and waits for it to come
    back to the redirect URI. Client credentials: requests an app token now, to
    check the app.
    """
    mode = _oauth_profile(name)
    context = current_runtime().context_for(name, variables=state().variables)
    if isinstance(mode, BrowserSignIn):

        def show(url: str) -> None:
            click.echo(f"Sign in at:\n\n  {url}\n", err=True)
            click.echo(
                f"waiting for the browser to come back to {mode.redirect_uri} (up to {timeout:g} s)...", err=True
            )

        record = mode.login(
            variables=context.variables,
            open_browser=(lambda _url: False) if no_browser else None,
            show_url=show,
            timeout=timeout,
        )
    else:
        login = mode.resolve(context)
        login.tokens.access_token()
        record = mode.store(context).load()  # type: ignore[assignment]
    summary = _summary(name, mode, mode.endpoints(context), record)
    emit(as_json, {"ok": True, **summary}, lambda: _print_summary(summary, prefix="signed in"))


@auth_group.command("status")
@json_option
@handle_errors
@profile_name
def auth_status(name: str, as_json: bool) -> None:
    """Who is signed in for profile NAME, with which scopes, until when (never the tokens)."""
    mode = _oauth_profile(name)
    context = current_runtime().context_for(name, variables=state().variables)
    record = mode.store(context).load()
    app = mode.resolved(context)
    if record is None or record.fingerprint != app.fingerprint:
        problem = (
            "not signed in: the vault holds no tokens for this profile"
            if record is None
            else "the stored tokens belong to another app, tenant or user than the profile now names"
        )
        raise ConsentRequiredError(problem, hint=f"run `postroom auth login {name}`")
    summary = _summary(name, mode, app.endpoints, record)
    emit(as_json, {"ok": True, **summary}, lambda: _print_summary(summary, prefix="signed in"))


@auth_group.command("logout")
@json_option
@handle_errors
@profile_name
def auth_logout(name: str, as_json: bool) -> None:
    """Forget the tokens of profile NAME (the vault entry); the app keeps its consent at the provider."""
    mode = _oauth_profile(name)
    removed = mode.store(current_runtime().context_for(name, variables=state().variables)).delete()
    text = f"removed the tokens of {name!r}" if removed else f"{name!r} held no tokens"
    emit(as_json, {"ok": True, "profile": name, "removed": removed}, lambda: click.echo(text))


def _summary(name: str, mode: OAuthMode, endpoints: OAuthEndpoints, record: TokenRecord) -> dict[str, Any]:
    now = time.time()
    return {
        "profile": name,
        "mode": mode.kind,
        "provider": endpoints.provider,
        "token_url": endpoints.token_url,
        "account": record.account,
        "scopes": list(record.scopes),
        "expires_at": dt.datetime.fromtimestamp(record.expires_at, dt.UTC).isoformat(timespec="seconds"),
        "expires_in_s": max(0, int(record.expires_at - now)),
        "refresh_token": record.refresh_token is not None,
        "obtained_at": dt.datetime.fromtimestamp(record.obtained_at, dt.UTC).isoformat(timespec="seconds"),
        "vault_entry": f"vault:{mode.token_name}/token",
    }


def _print_summary(summary: dict[str, Any], *, prefix: str) -> None:
    who = summary["account"] or "(the provider did not say who)"
    click.echo(f"{prefix}: {summary['profile']} — {who} ({summary['mode']}, {summary['provider']})")
    expires = f"{summary['expires_at']} (in {summary['expires_in_s'] // 60} min)"
    refresh = "yes (refreshed automatically)" if summary["refresh_token"] else "no"
    if summary["mode"] == "oauth2-implicit":
        refresh = "none (implicit grant): sign in again when the access token expires"
    for label, value in (
        ("scopes", " ".join(summary["scopes"]) or "(not reported)"),
        ("access token", f"expires {expires}"),
        ("refresh token", refresh),
        ("token endpoint", summary["token_url"]),
        ("stored in", f"{summary['vault_entry']} (encrypted)"),
    ):
        click.echo(f"  {label:<15}{value}")
