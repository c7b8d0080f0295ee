"""The local credential vault: encrypted at rest, never silently empty."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import keyring
import pytest
from cryptography.fernet import Fernet
from keyring.backend import KeyringBackend

from postroom import CredentialError, VaultError, VaultLockedError
from postroom.credentials import CredentialVault

CANARY = "canary-Vault-77ad"


def test_round_trip_and_encrypted_at_rest(isolated_home: Path) -> None:
    vault = CredentialVault()
    vault.set("invoices", "username", "bot@example.test")
    vault.set("invoices", "password", CANARY)
    vault.set("alerts", "password", "other")
    again = CredentialVault()
    assert again.get("invoices", "password").reveal() == CANARY
    assert again.list() == {"alerts": ["password"], "invoices": ["password", "username"]}
    raw = vault.path.read_bytes()
    assert CANARY.encode() not in raw and b"invoices" not in raw
    if sys.platform != "win32":
        assert stat.S_IMODE(vault.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(vault.path.with_suffix(".key").stat().st_mode) == 0o600


def test_missing_entry_and_attribute_say_what_exists(isolated_home: Path) -> None:
    vault = CredentialVault()
    vault.set("invoices", "password", CANARY)
    with pytest.raises(CredentialError, match=r"no credential named 'nope'.*credentials: invoices"):
        vault.get("nope", "password")
    with pytest.raises(CredentialError, match=r"no attribute 'username' \(attributes: password\)"):
        vault.get("invoices", "username", field_name="username")


def test_delete_attribute_then_credential(isolated_home: Path) -> None:
    vault = CredentialVault()
    vault.set("c", "a", "1")
    vault.set("c", "b", "2")
    vault.delete("c", "a")
    assert vault.list() == {"c": ["b"]}
    vault.delete("c")
    assert vault.list() == {}
    with pytest.raises(VaultError, match="does not exist"):
        vault.delete("c")


def test_wrong_key_is_a_clear_error_and_leaves_the_vault_untouched(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTROOM_VAULT_KEY", Fernet.generate_key().decode())
    vault = CredentialVault()
    vault.set("c", "password", CANARY)
    before = vault.path.read_bytes()
    monkeypatch.setenv("POSTROOM_VAULT_KEY", Fernet.generate_key().decode())
    with pytest.raises(VaultLockedError, match=r"does not open the vault"):
        CredentialVault().list()
    with pytest.raises(VaultLockedError):
        CredentialVault().set("c", "other", "x")  # no write with the wrong key
    assert vault.path.read_bytes() == before


def test_missing_key_never_gives_an_empty_vault(isolated_home: Path) -> None:
    vault = CredentialVault()
    vault.set("c", "password", CANARY)
    vault.path.with_suffix(".key").unlink()
    with pytest.raises(VaultLockedError, match="exists but its key was not found"):
        CredentialVault().list()
    with pytest.raises(VaultLockedError):
        CredentialVault().set("c", "x", "y")


def test_malformed_env_key_is_explained(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTROOM_VAULT_KEY", "not-a-key")
    with pytest.raises(VaultLockedError, match=r"\$POSTROOM_VAULT_KEY is not a valid key"):
        CredentialVault().set("c", "a", "b")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_key_file_readable_by_others_is_refused(isolated_home: Path) -> None:
    vault = CredentialVault()
    vault.set("c", "a", "b")
    key_file = vault.path.with_suffix(".key")
    key_file.chmod(0o644)
    with pytest.raises(VaultLockedError, match="chmod 600"):
        CredentialVault().list()


class MemoryKeyring(KeyringBackend):
    """A real keyring backend that keeps passwords in memory (stands in for Keychain / Credential Manager)."""

    priority = 10  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


def test_key_goes_to_the_os_keyring_when_one_works(isolated_home: Path) -> None:
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    try:
        vault = CredentialVault()
        vault.set("c", "password", CANARY)
        assert not vault.path.with_suffix(".key").exists()
        assert len(ring.store) == 1
        assert vault.key_location() is not None and vault.key_location().startswith("OS keyring")  # type: ignore[union-attr]
        assert CredentialVault().get("c", "password").reveal() == CANARY
    finally:
        keyring.set_keyring(previous)


def test_vault_names_are_checked(isolated_home: Path) -> None:
    with pytest.raises(VaultError, match="not usable"):
        CredentialVault().set("a/b", "password", "x")
    assert not (isolated_home / "vault.bin").exists()
