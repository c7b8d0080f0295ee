"""What a Graph access token grants, for Test connection and for naming a missing permission.

The token endpoint's ``scope`` lists delegated scopes; an app-only token gets ``.default``, and its
application permissions are only in the token itself (the ``roles`` claim of the JWT Entra issues).
The claims are read, not verified: Graph verifies the token, postroom only reports what it says.
"""

from __future__ import annotations

import base64
import json

from postroom.credentials import Secret

__all__ = ["granted"]


def _claims(token: Secret) -> dict[str, object]:
    parts = token.reveal().split(".")
    if len(parts) != 3:
        return {}  # an opaque token (not a JWT): nothing to read
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


def granted(scopes: tuple[str, ...], token: Secret) -> tuple[str, ...]:
    """The scopes the token endpoint named, plus the JWT's ``scp`` scopes and ``roles`` (app permissions)."""
    claims = _claims(token)
    found = list(scopes)
    scp = claims.get("scp")
    if isinstance(scp, str):
        found += scp.split()
    roles = claims.get("roles")
    if isinstance(roles, list):
        found += [str(role) for role in roles]
    return tuple(dict.fromkeys(found))
