"""What a session does when the connection drops in the middle of an operation, per kind of operation.

A session reconnects on the next call after any drop. Whether the interrupted
operation is then *repeated* depends on its kind: an operation is repeated only
when repeating it is safe, and the table says what makes it so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RETRY_POLICIES", "OperationKind", "RetryPolicy"]

OperationKind = Literal["read", "flags", "folder", "move", "delete", "append", "submit"]


@dataclass(frozen=True)
class RetryPolicy:
    """How an operation of one kind survives a dropped connection."""

    kind: OperationKind
    #: Tries after a drop (on a new connection); 0: never repeated, the drop is the caller's to judge.
    retries: int
    #: Why repeating is safe, or why it is not.
    why: str


RETRY_POLICIES: dict[OperationKind, RetryPolicy] = {
    policy.kind: policy
    for policy in (
        RetryPolicy("read", 1, "reading changes nothing: it is repeated as it was"),
        RetryPolicy("flags", 1, "setting a flag that is set already changes nothing: repeated as it was"),
        RetryPolicy("folder", 1, "creating a folder that exists returns it as it is: repeated as it was"),
        RetryPolicy(
            "move",
            1,
            "the transport records what it sent; the repeat finds each message the first try moved in the target "
            "(IMAP: by its Message-ID) and reports it already done, with its new key",
        ),
        RetryPolicy("delete", 1, "the repeat reports each message the first try deleted as already done"),
        RetryPolicy(
            "append", 1, "the repeat first looks for the message's Message-ID in the folder and stores no second copy"
        ),
        RetryPolicy(
            "submit",
            0,
            "the server may have sent the message before the drop: never repeated, and the error says it may "
            "have gone out",
        ),
    )
}
