"""Basic auth: a username and a password (IMAP LOGIN / AUTHENTICATE PLAIN, POP3 USER/PASS)."""

from __future__ import annotations

from postroom.auth.base import PasswordLogin, check_wire_safe
from postroom.credentials import ResolveContext, SecretRef, as_secret_ref
from postroom.credentials.refs import format_ref, parse_ref
from postroom.validation import check_known

__all__ = ["Basic", "Ntlm"]


class Basic:
    """Log in with a username and password.

    >>> from postroom import Vault, Variable
    >>> Basic(username=Variable("mailbox"), password=Vault("mail", "password"))
    Basic(username=var:mailbox, password=vault:mail/password)
    """

    kind = "basic"
    __slots__ = ("password", "username")

    username: SecretRef
    password: SecretRef

    def __init__(self, username: SecretRef | str, password: SecretRef | str) -> None:
        object.__setattr__(self, "username", as_secret_ref(username, "username"))
        object.__setattr__(self, "password", as_secret_ref(password, "password"))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is a value: build a new one instead of setting {name}")

    def __copy__(self) -> Basic:
        return self  # a value: a copy is the same value

    def __deepcopy__(self, memo: object) -> Basic:
        return self

    def __reduce__(self) -> tuple[type[Basic], tuple[SecretRef, SecretRef]]:
        return type(self), (self.username, self.password)

    def replace(self, **changes: SecretRef | str) -> Basic:
        """A copy with ``username`` and/or ``password`` changed."""
        check_known(type(self).__name__, changes, ("username", "password"))
        return type(self)(**{"username": self.username, "password": self.password, **changes})

    def resolve(self, context: ResolveContext) -> PasswordLogin:
        return PasswordLogin(
            username=check_wire_safe(self.username.resolve(context, "username"), "username"),
            password=check_wire_safe(self.password.resolve(context, "password"), "password"),
        )

    def describe(self) -> dict[str, str]:
        return {"mode": self.kind, "username": self.username.describe(), "password": self.password.describe()}

    def to_profile(self) -> dict[str, str]:
        record = {"mode": self.kind}
        for name in ("username", "password"):
            record[name] = format_ref(getattr(self, name), name)
        return record

    @classmethod
    def from_profile(cls, record: dict[str, str]) -> Basic:  # also builds Ntlm
        return cls(
            username=parse_ref(record["username"], "username"), password=parse_ref(record["password"], "password")
        )

    def __repr__(self) -> str:
        return f"Basic(username={self.username.describe()}, password={self.password.describe()})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Basic)
            and type(other) is type(self)
            and (other.username, other.password)
            == (
                self.username,
                self.password,
            )
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.username, self.password))


class Ntlm(Basic):
    """NTLM (EWS on an on-premises Exchange): a username and password, never sent in the clear.

    A bare user name logs in as ``DOMAIN\\user`` with the server's ``domain``; a UPN
    (``user@corp.example``) or ``DOMAIN\\user`` is used as given.
    """

    kind = "ntlm"
    __slots__ = ()

    def __repr__(self) -> str:
        return f"Ntlm(username={self.username.describe()}, password={self.password.describe()})"
