"""Where the local vault's encryption key lives.

Looked up in this order:

1. ``POSTROOM_VAULT_KEY`` (a Fernet key) — explicit wins; what CI and containers use;
2. the OS keyring (Keychain, Windows Credential Manager, Secret Service), when one works;
3. a key file next to the vault, readable only by its owner.

A new key goes to the keyring when one works, else to the key file. Only the
32-byte key is kept in the keyring: Windows caps a credential at 2,560 bytes,
too small for a vault of tokens.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from postroom.errors import VaultLockedError
from postroom.logs import get_logger
from postroom.paths import write_private_file

if TYPE_CHECKING:  # cryptography is imported only when the vault is used: it costs ~15 MB of memory
    from cryptography.fernet import Fernet

__all__ = ["ENV_KEY", "KeyringAccess", "VaultKey", "VaultKeyStore"]

ENV_KEY = "POSTROOM_VAULT_KEY"
_KEYRING_SERVICE = "postroom"
_log = get_logger(__name__)


@dataclass(frozen=True)
class VaultKey:
    """A vault key and where it came from (for messages; never the key itself)."""

    fernet: Fernet
    location: str

    def __repr__(self) -> str:
        return f"VaultKey(location={self.location!r})"


class KeyringAccess:
    """The OS keyring, or nothing when none works (headless Linux, containers)."""

    def __init__(self, username: str) -> None:
        self._username = username

    def _backend(self) -> object | None:
        try:
            import keyring
            from keyring.backends import fail
        except ImportError:  # pragma: no cover - keyring is a dependency
            return None
        backend = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
            return None
        return backend

    def get(self) -> str | None:
        backend = self._backend()
        if backend is None:
            return None
        try:
            value = backend.get_password(_KEYRING_SERVICE, self._username)  # type: ignore[attr-defined]
        except Exception as exc:  # any backend failure means "no keyring here"
            _log.debug("keyring unavailable: %s", type(exc).__name__)
            return None
        return value if isinstance(value, str) else None

    def set(self, value: str) -> bool:
        backend = self._backend()
        if backend is None:
            return False
        try:
            backend.set_password(_KEYRING_SERVICE, self._username, value)  # type: ignore[attr-defined]
        except Exception as exc:
            _log.debug("keyring refused the key: %s", type(exc).__name__)
            return False
        return True

    @property
    def label(self) -> str:
        return f"OS keyring ({_KEYRING_SERVICE}/{self._username})"


class VaultKeyStore:
    """Finds the key of the vault at ``vault_path``, or makes one for a new vault."""

    def __init__(self, vault_path: Path, keyring_access: KeyringAccess | None = None) -> None:
        self.vault_path = vault_path
        self.key_file = vault_path.with_suffix(".key")
        self._keyring = keyring_access or KeyringAccess(f"vault:{vault_path.resolve()}")

    def find(self) -> VaultKey | None:
        """The existing key, or None when there is none anywhere."""
        env_value = os.environ.get(ENV_KEY)
        if env_value:
            return VaultKey(_fernet(env_value, f"${ENV_KEY}"), f"${ENV_KEY}")
        ring_value = self._keyring.get()
        if ring_value:
            return VaultKey(_fernet(ring_value, self._keyring.label), self._keyring.label)
        if self.key_file.exists():
            _check_owner_only(self.key_file)
            return VaultKey(
                _fernet(self.key_file.read_text(encoding="ascii").strip(), str(self.key_file)),
                str(self.key_file),
            )
        return None

    def create(self) -> VaultKey:
        """Make a key for a new vault and keep it in the best place available."""
        existing = self.find()
        if existing is not None:
            return existing
        from cryptography.fernet import Fernet

        value = Fernet.generate_key().decode("ascii")
        if self._keyring.set(value):
            return VaultKey(Fernet(value), self._keyring.label)
        write_private_file(self.key_file, value.encode("ascii") + b"\n")
        _log.warning(
            "no OS keyring is available: the vault key was written to %s (readable only by you); anyone who can "
            "read that file and the vault can read your secrets. Set POSTROOM_VAULT_KEY to keep the key elsewhere",
            self.key_file,
        )
        return VaultKey(Fernet(value), str(self.key_file))


def _fernet(value: str, location: str) -> Fernet:
    from cryptography.fernet import Fernet

    try:
        return Fernet(value.strip())
    except (ValueError, TypeError):
        raise VaultLockedError(
            f"the vault key in {location} is not a valid key",
            hint="it must be 32 url-safe base64-encoded bytes, as made by "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`",
        ) from None


def _check_owner_only(path: Path) -> None:
    if sys.platform == "win32":  # NTFS ACLs; the file is created in the user's profile
        return
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise VaultLockedError(
            f"the vault key file {path} can be read by other users (mode {stat.filemode(mode)})",
            hint=f"run `chmod 600 {path}`",
        )
