"""Test helpers for bot authors: an in-memory mail server and mailbox behind the same contract as IMAP.

::

    from postroom import Basic, Variable, connect, messages, move
    from postroom.testing import InMemory, MemoryServer

    server = MemoryServer.named("invoices-test")
    server.deliver(open("tests/invoice.eml", "rb").read())
    session = connect("invoices", InMemory(server="invoices-test"))
    for mail in messages(session):
        move(session, mail, "Processed")
    assert [m.uid for m in server.messages("Processed")] == [1]

Importing this module registers the ``memory`` protocol (``postroom connect NAME
--protocol memory --server NAME``); the package's other modules do not know it exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from postroom.auth.base import AuthMode, Login, PasswordLogin
from postroom.config.base import Setting
from postroom.credentials import ResolveContext, Secret
from postroom.errors import ConfigError
from postroom.testing.mailbox import MemoryKey, MemoryMailbox
from postroom.testing.server import MemoryServer, StoredMessage
from postroom.transports.registry import Backend, register

__all__ = ["BACKEND", "AnyLogin", "InMemory", "MemoryKey", "MemoryMailbox", "MemoryServer", "StoredMessage"]


class AnyLogin:
    """The login of a :class:`MemoryServer` that has no ``users``: nothing to resolve, nothing to store."""

    kind = "none"

    def __repr__(self) -> str:
        return "AnyLogin()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AnyLogin)

    def __hash__(self) -> int:
        return hash(AnyLogin)

    def resolve(self, context: ResolveContext) -> Login:
        return PasswordLogin(Secret("memory", scrub=False), Secret("memory", scrub=False))

    def describe(self) -> dict[str, str]:
        return {"mode": self.kind}

    def to_profile(self) -> dict[str, str]:
        raise ConfigError("auth", "AnyLogin is not kept in profiles", hint="give auth=Basic(...) with references")


@dataclass(frozen=True, kw_only=True)
class InMemory:
    """Settings of a session to the :class:`MemoryServer` named ``server``."""

    server: str = "memory"
    auth: AuthMode = field(default_factory=AnyLogin)
    protocol: Literal["memory"] = field(default="memory", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.server, str) or not self.server.strip():
            raise ConfigError("server", f"{self.server!r} is not a server name", hint="e.g. server='invoices-test'")

    @property
    def address(self) -> str:
        return f"memory://{self.server}"

    def given(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def clone(self, **changes: Any) -> InMemory:
        return InMemory(**{**self.given(), **changes})


BACKEND = register(
    Backend(
        protocol="memory",
        label="in-memory",
        config_type=InMemory,
        mailbox=MemoryMailbox,
        key_type=MemoryKey,
        settings=(Setting("server", "In-memory test server: its name (postroom.testing)."),),
        auth_kinds=frozenset({"basic"}),
        summary="an in-memory server for tests and dry runs",
    )
)
