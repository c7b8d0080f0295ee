"""How a secret becomes a login: one module per auth mode."""

from postroom.auth.base import AuthMode, PasswordLogin
from postroom.auth.basic import Basic

__all__ = ["AuthMode", "Basic", "PasswordLogin"]
