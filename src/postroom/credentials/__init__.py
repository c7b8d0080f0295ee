"""Where secrets come from: the credential vault, bot variables, or insecure strings."""

from postroom.credentials.secret import Secret, redact
from postroom.credentials.shared_vault import SharedVault
from postroom.credentials.sources import (
    Insecure,
    InsecureSecretWarning,
    Plain,
    ResolveContext,
    SecretRef,
    SecretSource,
    Variable,
    Vault,
    as_secret_ref,
)
from postroom.credentials.vault import CredentialVault

__all__ = [
    "CredentialVault",
    "Insecure",
    "InsecureSecretWarning",
    "Plain",
    "ResolveContext",
    "Secret",
    "SecretRef",
    "SecretSource",
    "SharedVault",
    "Variable",
    "Vault",
    "as_secret_ref",
    "redact",
]
