"""What a transport hands over for each message in a loop: identity, flags, headers, structure.

Data only: transports build these; :class:`~postroom.message.model.Message` reads them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from postroom.message.keys import KeyList, KeyRun, MessageKey
from postroom.message.meeting import Meeting
from postroom.message.structure import MimePart

__all__ = ["KeyList", "KeyRun", "MessageKey", "MessageSummary"]


@dataclass(frozen=True)
class MessageSummary:
    """One message as listed: enough to filter and to describe it without its body."""

    key: MessageKey
    header: bytes
    flags: frozenset[str] | None
    size: int
    received: dt.datetime | None
    structure: MimePart | None = None
    #: The first bytes of the first body part (MIME section 1, still transfer-encoded), where the transport
    #: brought them along with the summary because the caller reads bodies; the transport's own business.
    body_start: bytes | None = None
    #: Problems the transport met building this summary (e.g. characters EWS could not carry), in words.
    defects: tuple[str, ...] = ()
    #: The meeting, where the server says the item is a meeting message (EWS, Graph); None: ask the structure.
    meeting: Meeting | None = None
