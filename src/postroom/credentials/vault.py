"""The local credential vault: named credentials with attributes, encrypted at rest.

A credential is a name (``"invoices-mailbox"``) with attributes (``"username"``,
``"password"``, ``"client_secret"``, ...). The whole vault is one Fernet token
(AES-128-CBC + HMAC-SHA256) in one file, rewritten atomically under a file lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from postroom.credentials.secret import Secret, scrubbed
from postroom.credentials.vault_key import VaultKey, VaultKeyStore
from postroom.errors import CredentialError, VaultError, VaultLockedError
from postroom.paths import home_dir, locked, write_private_file

__all__ = ["CredentialVault"]

_FORMAT_VERSION = 1


class CredentialVault:
    """The encrypted credential vault at ``path`` (default: ``<postroom home>/vault.bin``)."""

    def __init__(self, path: Path | None = None, key_store: VaultKeyStore | None = None) -> None:
        self.path = path or home_dir() / "vault.bin"
        self._keys = key_store or VaultKeyStore(self.path)

    @classmethod
    def default(cls) -> CredentialVault:
        """The current user's vault."""
        return cls()

    def __repr__(self) -> str:
        return f"CredentialVault(path={str(self.path)!r})"

    # -- reading -------------------------------------------------------------------------

    def get(self, name: str, attribute: str, *, field_name: str | None = None) -> Secret:
        """The secret stored as ``name``/``attribute``."""
        entries = self._read()
        ref = f"vault:{name}/{attribute}"
        prefix = f"{field_name}: " if field_name else ""
        if name not in entries:
            known = ", ".join(sorted(entries)) or "none"
            raise CredentialError(
                f"{prefix}{ref}: no credential named {name!r} in the vault (credentials: {known})",
                hint=f"add it with `postroom vault set {name} {attribute}`",
            )
        if attribute not in entries[name]:
            known = ", ".join(sorted(entries[name]))
            raise CredentialError(
                f"{prefix}{ref}: credential {name!r} has no attribute {attribute!r} (attributes: {known})",
                hint=f"add it with `postroom vault set {name} {attribute}`",
            )
        return Secret(entries[name][attribute], scrub=scrubbed(field_name or attribute))

    def list(self) -> dict[str, list[str]]:
        """Credential names and their attribute names (never values)."""
        return {name: sorted(attrs) for name, attrs in sorted(self._read().items())}

    def key_location(self) -> str | None:
        """Where the key is kept, or None before the vault has one."""
        key = self._keys.find()
        return key.location if key else None

    # -- writing -------------------------------------------------------------------------

    def set(self, name: str, attribute: str, value: str) -> None:
        """Store ``value`` as ``name``/``attribute``, creating the vault on first use."""
        self._check_names(name, attribute)
        with self._locked():
            entries = self._read(create=True)
            entries.setdefault(name, {})[attribute] = value
            self._write(entries)

    def update(self, name: str, attribute: str, change: Callable[[str | None], str | None]) -> str | None:
        """Read-modify-write one value while holding the vault lock, so other threads and processes wait.

        ``change`` gets the current value (None when absent) and returns the new one,
        or None to remove it; it may do network work (an OAuth2 refresh) that must not
        race with another process doing the same. Returns what was stored.
        """
        self._check_names(name, attribute)
        with self._locked():
            entries = self._read(create=True)
            current = entries.get(name, {}).get(attribute)
            new = change(current)
            if new == current:
                return new
            if new is None:
                entries.get(name, {}).pop(attribute, None)
                if name in entries and not entries[name]:
                    del entries[name]
            else:
                entries.setdefault(name, {})[attribute] = new
            self._write(entries)
            return new

    def delete(self, name: str, attribute: str | None = None) -> None:
        """Remove one attribute, or the whole credential when ``attribute`` is None."""
        with self._locked():
            entries = self._read()
            if name not in entries or (attribute is not None and attribute not in entries[name]):
                what = f"{name}/{attribute}" if attribute else name
                raise VaultError(f"vault:{what} does not exist", hint="see `postroom vault list`")
            if attribute is None:
                del entries[name]
            else:
                del entries[name][attribute]
                if not entries[name]:
                    del entries[name]
            self._write(entries)

    # -- storage -------------------------------------------------------------------------

    @staticmethod
    def _check_names(name: str, attribute: str) -> None:
        for label, text in (("name", name), ("attribute", attribute)):
            if not text or any(ch in text for ch in "/\r\n\0") or text != text.strip():
                raise VaultError(
                    f"vault {label} {text!r} is not usable",
                    hint="use a non-empty name without '/', line breaks or surrounding spaces",
                )

    def _key(self) -> VaultKey:
        """The vault's key; a new one only while no vault file exists."""
        key = self._keys.find()
        if key is not None:
            return key
        if self.path.exists():
            raise VaultLockedError(
                f"the vault {self.path} exists but its key was not found "
                f"(looked in $POSTROOM_VAULT_KEY, the OS keyring and {self._keys.key_file})",
                hint="restore the key (set POSTROOM_VAULT_KEY or put the key file back); the vault was left untouched",
            )
        return self._keys.create()

    def _read(self, *, create: bool = False) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            if create:
                self._key()
            return {}
        from cryptography.fernet import InvalidToken

        key = self._key()
        try:
            plain = key.fernet.decrypt(self.path.read_bytes())
        except InvalidToken:
            raise VaultLockedError(
                f"the key from {key.location} does not open the vault {self.path}",
                hint="the vault was encrypted with another key; restore that key "
                "(POSTROOM_VAULT_KEY, OS keyring or key file). The vault was left untouched",
            ) from None
        data: Any = json.loads(plain)
        if not isinstance(data, dict) or data.get("version") != _FORMAT_VERSION:
            raise VaultError(f"the vault {self.path} has an unknown format", hint="upgrade postroom")
        entries: dict[str, dict[str, str]] = data["entries"]
        return entries

    def _write(self, entries: dict[str, dict[str, str]]) -> None:
        key = self._key()
        plain = json.dumps({"version": _FORMAT_VERSION, "entries": entries}).encode("utf-8")
        write_private_file(self.path, key.fernet.encrypt(plain))

    def _locked(self) -> AbstractContextManager[None]:
        """Serialise read-modify-write across threads and processes."""
        return locked(self.path)
