"""What a session does when the connection drops: how often it reconnects (:class:`ReconnectPolicy`),
and whether the interrupted operation is then repeated (:data:`RETRY_POLICIES`, per kind of operation).

An operation is repeated only when repeating it is safe, and the table says what makes it so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from postroom.errors import ConfigError

__all__ = ["RETRY_POLICIES", "OperationKind", "ReconnectPolicy", "RetryPolicy"]

OperationKind = Literal["read", "flags", "folder", "move", "delete", "append", "submit"]


@dataclass(frozen=True)
class ReconnectPolicy:
    """How hard a session tries to get its connection back, per operation.

    After a drop the session reconnects at once; if the connection drops again (or the
    reconnect fails) it waits ``backoff`` seconds, then twice that, up to ``max_backoff``,
    for ``attempts`` reconnects in a row. A repeated operation that made progress (a
    loop keeps every message it had read) starts the count again.
    """

    attempts: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 0:
            raise ConfigError("reconnect.attempts", f"{self.attempts!r} is not a count", hint="give 0 or more")
        if self.backoff < 0 or self.max_backoff < self.backoff:
            raise ConfigError("reconnect.backoff", "needs 0 <= backoff <= max_backoff", hint="e.g. 0.5 and 30")

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect number ``attempt`` (1 is the first: no wait)."""
        return 0.0 if attempt <= 1 else min(self.backoff * 2 ** (attempt - 2), self.max_backoff)


@dataclass(frozen=True)
class RetryPolicy:
    """Whether an operation of one kind is repeated on a new connection after a drop."""

    kind: OperationKind
    #: False: never repeated, the drop is the caller's to judge.
    repeat: bool
    #: Why repeating is safe, or why it is not.
    why: str
    #: What the mailbox holds when the session gives up on an operation of this kind.
    state: str


RETRY_POLICIES: dict[OperationKind, RetryPolicy] = {
    policy.kind: policy
    for policy in (
        RetryPolicy("read", True, "reading changes nothing: it is repeated as it was", "nothing was changed"),
        RetryPolicy(
            "flags",
            True,
            "setting a flag that is set already changes nothing: repeated as it was",
            "some of the flags may be set already; setting them again is safe",
        ),
        RetryPolicy(
            "folder",
            True,
            "creating a folder that exists returns it as it is: repeated as it was",
            "the folder may exist already; creating it again is safe",
        ),
        RetryPolicy(
            "move",
            True,
            "the transport records what it sent; the repeat finds each message the first try moved in the target "
            "(IMAP: by its Message-ID) and reports it already done, with its new key",
            "some messages may have moved; moving the same keys again reports those already done",
        ),
        RetryPolicy(
            "delete",
            True,
            "the repeat reports each message the first try deleted as already done",
            "some messages may be deleted; deleting the same keys again reports those already done",
        ),
        RetryPolicy(
            "append",
            True,
            "the repeat first looks for the message's Message-ID in the folder and stores no second copy",
            "the message may be stored; storing it again looks for its Message-ID first",
        ),
        RetryPolicy(
            "submit",
            False,
            "the server may have sent the message before the drop: never repeated, and the error says it may "
            "have gone out",
            "the message may have been sent",
        ),
    )
}
