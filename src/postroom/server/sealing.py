"""Sealing secrets at rest, and signing what the service hands out and must get back unchanged.

The key lives in a file of its own (``server.key``, owner-only, made on first start) or wherever
``key_file`` points — never in the database, so a copy of the database alone opens nothing.
Secrets are sealed with Fernet (AES-128-CBC + HMAC-SHA256, authenticated); the OAuth ``state`` is
signed with an HMAC key derived from the same key for that one purpose.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from postroom.credentials import Secret
from postroom.errors import ConfigError
from postroom.paths import write_private_file

__all__ = ["Sealer", "digest", "random_token"]


class Sealer:
    """Seals and opens the service's secrets; signs and checks tokens it issues."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)
        self._signing = hmac.new(base64.urlsafe_b64decode(key), b"postroom-server/sign", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "Sealer(key=...)"

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> Sealer:
        """The key in ``path``; made (owner-only) when missing and ``create``."""
        if not path.exists():
            if not create:
                raise ConfigError("key_file", f"{path} does not exist", hint="start the server once to make it")
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private_file(path, Fernet.generate_key() + b"\n")
        try:
            key = path.read_bytes().strip()
            return cls(key)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                "key_file", f"{path} holds no usable key ({type(exc).__name__})", hint="restore it from a backup"
            ) from None

    def seal(self, value: str | Secret) -> bytes:
        text = value.reveal() if isinstance(value, Secret) else value
        return self._fernet.encrypt(text.encode())

    def open(self, sealed: bytes) -> Secret:
        try:
            return Secret(self._fernet.decrypt(sealed).decode())
        except InvalidToken:
            raise ConfigError(
                "key_file", "a sealed secret does not open with this key", hint="start the server with its own key"
            ) from None

    def sign(self, value: str) -> str:
        mac = hmac.new(self._signing, value.encode(), hashlib.sha256).digest()
        return value + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def signed_value(self, signed: str) -> str | None:
        """The value ``signed`` carries if this service signed it, else None."""
        value, _, _mac = signed.rpartition(".")
        return value if value and hmac.compare_digest(self.sign(value), signed) else None


def random_token(nbytes: int = 32) -> str:
    return base64.urlsafe_b64encode(os.urandom(nbytes)).rstrip(b"=").decode()


def digest(value: str) -> str:
    """What the database keeps of a high-entropy token (session ids, runner keys): its SHA-256."""
    return hashlib.sha256(value.encode()).hexdigest()
