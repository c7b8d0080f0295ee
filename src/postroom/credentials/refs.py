"""Secret references as text, for the CLI and stored profiles.

``vault:NAME/ATTRIBUTE``, ``var:NAME``, ``env:NAME``; anything else is an insecure
string typed in.
"""

from __future__ import annotations

from postroom.credentials.sources import Insecure, SecretRef, Variable, Vault
from postroom.errors import ConfigError

__all__ = ["format_ref", "parse_ref"]


def parse_ref(text: str, field_name: str) -> SecretRef:
    """Parse a reference; a bare value becomes :class:`Insecure`."""
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
    return Insecure(text)


def format_ref(ref: SecretRef, field_name: str) -> str:
    """The text form of a stored reference. Insecure values cannot be stored."""
    if isinstance(ref, Insecure):
        raise ConfigError(field_name, "an insecure string cannot be stored in a profile", hint="use vault:")
    return ref.describe()
