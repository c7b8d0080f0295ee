"""Secret references as text, for the CLI and stored profiles.

``vault:NAME/ATTRIBUTE``, ``var:NAME``, ``env:NAME``; anything else is an identifier
typed in (a username, a client or tenant id, stored as it is) or an insecure string.
"""

from __future__ import annotations

from postroom.credentials.secret import IDENTITY_FIELDS
from postroom.credentials.sources import Insecure, Plain, SecretRef, Variable, Vault
from postroom.errors import ConfigError

__all__ = ["format_ref", "parse_ref"]


def parse_ref(text: str, field_name: str) -> SecretRef:
    """Parse a reference; a bare value becomes :class:`Plain` for an identifier, else :class:`Insecure`."""
    if text.startswith("vault:"):
        body = text[len("vault:") :]
        name, sep, attribute = body.rpartition("/")
        if not sep or not name or not attribute:
            raise ConfigError(field_name, f"{text!r} is not a vault reference", hint="write vault:NAME/ATTRIBUTE")
        return Vault(name, attribute)
    for prefix, environment_only in (("var:", False), ("env:", True)):
        if text.startswith(prefix):
            name = text[len(prefix) :]
            if not name:
                raise ConfigError(field_name, f"{text!r} names no variable", hint=f"write {prefix}NAME")
            return Variable(name, environment_only=environment_only)
    return Plain(text) if field_name in IDENTITY_FIELDS else Insecure(text)


def format_ref(ref: SecretRef, field_name: str) -> str:
    """The text form of a stored reference. Insecure values cannot be stored."""
    if isinstance(ref, Insecure):
        raise ConfigError(field_name, "an insecure string cannot be stored in a profile", hint="use vault:")
    return ref.describe()
