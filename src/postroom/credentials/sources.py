"""Where a secret field's value comes from: the vault, a bot variable, or an insecure string.

Every secret field of a connection (username, password, client id, client
secret, tenant id) takes one of these *references*. A reference holds no secret
itself (except :class:`Insecure`, whose ``repr`` still hides it); it is resolved
to a :class:`~postroom.credentials.secret.Secret` only when a session connects.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from postroom.credentials.secret import IDENTITY_FIELDS, Secret, scrubbed
from postroom.errors import CredentialError, PostroomWarning

if TYPE_CHECKING:
    from postroom.credentials.vault import CredentialVault

__all__ = [
    "Insecure",
    "InsecureSecretWarning",
    "ResolveContext",
    "SecretRef",
    "SecretSource",
    "Variable",
    "Vault",
    "as_secret_ref",
]


class InsecureSecretWarning(PostroomWarning):
    """A secret was given as a plain string instead of a vault entry or variable."""


@dataclass(frozen=True)
class ResolveContext:
    """What a reference may be resolved against: the bot's variables and the vault."""

    variables: Mapping[str, str] = field(default_factory=dict)
    vault: CredentialVault | None = None
    #: Where OAuth2 tokens live: a name → ``TokenStore`` factory (``postroom.auth.oauth.tokens``);
    #: None keeps them in ``vault`` (else the default vault).
    token_stores: Callable[[str], Any] | None = None
    #: How the user signs in again, in the caller's words (a CLI names its command), for error hints.
    sign_in_hint: str | None = None
    #: A ``postroom server``'s shared vault: vault names with a ``/`` (``locker/credential``) resolve there.
    shared_vault: Any = None


class SecretSource(Protocol):
    """Anything that can produce a secret for a field."""

    def resolve(self, context: ResolveContext, field_name: str) -> Secret:
        """The secret, or a :class:`CredentialError` naming the field and the fix."""
        ...

    def describe(self) -> str:
        """A description safe to print and to store (never the value)."""
        ...


@dataclass(frozen=True)
class Vault:
    """A credential in the credential vault: ``Vault("mailbox", "password")``."""

    name: str
    attribute: str

    def resolve(self, context: ResolveContext, field_name: str) -> Secret:
        if context.shared_vault is not None and "/" in self.name:
            found: Secret = context.shared_vault.get(self.name, self.attribute, field_name=field_name)
            return found
        vault = context.vault
        if vault is None:
            from postroom.credentials.vault import CredentialVault

            vault = CredentialVault.default()
        return vault.get(self.name, self.attribute, field_name=field_name)

    def describe(self) -> str:
        return f"vault:{self.name}/{self.attribute}"


@dataclass(frozen=True)
class Variable:
    """A variable of the running bot: ``Variable("mailbox_password")``.

    Looked up in the variables given to :func:`postroom.connect` (the CLI's
    ``--var NAME=VALUE``), then in the process environment.
    ``Variable(name, environment_only=True)`` reads only the environment (the
    CLI's ``env:NAME``).
    """

    name: str
    environment_only: bool = False

    def resolve(self, context: ResolveContext, field_name: str) -> Secret:
        if not self.environment_only and self.name in context.variables:
            return Secret(context.variables[self.name], scrub=scrubbed(field_name))
        if self.name in os.environ:
            return Secret(os.environ[self.name], scrub=scrubbed(field_name))
        where = "environment variable" if self.environment_only else "variable"
        fix = (
            f"export {self.name}=... before running"
            if self.environment_only
            else f"pass variables={{{self.name!r}: ...}} to connect() (CLI: --var {self.name}=...) "
            f"or set the environment variable {self.name}"
        )
        raise CredentialError(f"{field_name}: {where} {self.name!r} is not set", hint=fix)

    def describe(self) -> str:
        return f"env:{self.name}" if self.environment_only else f"var:{self.name}"


_warned_lock = threading.Lock()
_warned_fields: set[str] = set()


class Insecure:
    """A secret typed in as plain text. Allowed, with a one-time warning per field.

    Prefer :class:`Vault` or :class:`Variable`: a typed-in secret ends up in
    scripts, shell history and version control.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def resolve(self, context: ResolveContext, field_name: str) -> Secret:
        with _warned_lock:
            first = field_name not in _warned_fields
            _warned_fields.add(field_name)
        if first:
            warnings.warn(
                f"{field_name} is an insecure string typed in; store it in the credential vault "
                f"(postroom vault set NAME ATTRIBUTE) or pass it as a variable instead",
                InsecureSecretWarning,
                stacklevel=2,
            )
        return Secret(self._value, scrub=scrubbed(field_name))

    def describe(self) -> str:
        return "insecure:***"

    def __repr__(self) -> str:
        return "Insecure('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Insecure) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Insecure", self._value))


class Plain:
    """An identifier typed in (a username, a client or tenant id): not a secret, so no warning, shown as it is."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def resolve(self, context: ResolveContext, field_name: str) -> Secret:
        return Secret(self.value, scrub=False)

    def describe(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return f"Plain({self.value!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plain) and other.value == self.value

    def __hash__(self) -> int:
        return hash(("Plain", self.value))


SecretRef: TypeAlias = Vault | Variable | Insecure | Plain
"""A reference to a secret (or an identifier): where its value comes from."""


def as_secret_ref(value: SecretRef | str, field_name: str) -> SecretRef:
    """Accept a reference, or a plain string: :class:`Plain` for an identifier (``username``, ``client_id``,
    ``tenant_id``), else :class:`Insecure` (it warns when used)."""
    if isinstance(value, Vault | Variable | Insecure | Plain):
        return value
    if isinstance(value, str):
        return Plain(value) if field_name in IDENTITY_FIELDS else Insecure(value)
    from postroom.errors import ConfigError

    raise ConfigError(
        field_name,
        f"expected Vault(...), Variable(...), Insecure(...) or a string, got {type(value).__name__}",
    )
