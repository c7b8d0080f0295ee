"""The optional parts of postroom, and the clear error when one is missing.

A plain ``pip install postroom`` gives IMAP, POP3, SMTP, the vault and Basic auth.
The rest comes with an extra: ``[microsoft]`` (MSAL: OAuth2 with Microsoft 365),
``[oauth]`` (Authlib: OAuth2 with Gmail and other providers), ``[ews]`` (exchangelib:
Exchange Web Services), ``[outlook]`` (httpx: Microsoft Graph), ``[managed]`` (tokens from a
``postroom server``), ``[server]`` (the server itself), or ``[all]``.
"""

from __future__ import annotations

import importlib.util

from postroom.errors import MissingExtraError

__all__ = ["EXTRAS", "require_extra"]

#: extra → the modules it installs that postroom imports.
EXTRAS: dict[str, tuple[str, ...]] = {
    "microsoft": ("msal", "requests"),
    "oauth": ("authlib", "requests"),
    "ews": ("exchangelib", "requests", "oauthlib"),
    "outlook": ("httpx",),
    "bots": ("sqlalchemy", "alembic", "yaml"),
    "postgres": ("psycopg",),
    "celery": ("celery",),
    "managed": ("httpx",),
    "server": ("starlette", "uvicorn", "jinja2", "python_multipart", "argon2", "sqlalchemy", "alembic"),
}


def require_extra(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` (with the pip line) unless ``extra`` is installed."""
    for module in EXTRAS[extra]:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(feature, extra, module)
