"""How a secret becomes a login: one module (or package) per auth mode."""

from typing import Any

from postroom.auth.base import AuthMode, Login, PasswordLogin, TokenLogin
from postroom.auth.basic import Basic, Ntlm
from postroom.auth.managed import Managed
from postroom.auth.oauth import OAuth2ClientCredentials, OAuth2Implicit, OAuth2PKCE, OAuth2ROPC
from postroom.errors import ConfigError

__all__ = [
    "AUTH_MODES",
    "AuthMode",
    "Basic",
    "Login",
    "Managed",
    "Ntlm",
    "OAuth2ClientCredentials",
    "OAuth2Implicit",
    "OAuth2PKCE",
    "OAuth2ROPC",
    "PasswordLogin",
    "TokenLogin",
    "auth_from_profile",
]

#: Profile ``mode`` → auth mode class.
AUTH_MODES: dict[str, Any] = {
    cls.kind: cls for cls in (Basic, Ntlm, OAuth2PKCE, OAuth2ClientCredentials, OAuth2ROPC, OAuth2Implicit, Managed)
}


def auth_from_profile(record: dict[str, str]) -> AuthMode:
    """The auth mode stored in a profile record."""
    mode = AUTH_MODES.get(record.get("mode", ""))
    if mode is None:
        raise ConfigError("auth", f"unknown auth mode {record.get('mode')!r}", hint=f"one of {', '.join(AUTH_MODES)}")
    built: AuthMode = mode.from_profile(record)
    return built
