"""The per-mailbox governor: at most 4 Graph requests in flight, and Graph's ``Retry-After`` obeyed by all.

Exchange Online serves at most 4 concurrent requests per app and mailbox and answers a 5th
with ``429 ApplicationThrottled`` ("MailboxConcurrency"). Every session and thread of the
process that opens the same mailbox takes its slots from one governor, so postroom never
sends that 5th request. A ``$batch`` weighs as many slots as requests Outlook runs from it at
once (up to 4). When Graph says to wait, every user of the mailbox waits.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MAX_IN_FLIGHT", "Governor", "governor_for"]

#: Exchange Online's concurrency limit per app and mailbox (Microsoft Graph throttling limits, Outlook service).
MAX_IN_FLIGHT = 4


class Governor:
    """Slots for requests to one mailbox, and the time before which none may start."""

    def __init__(self, limit: int = MAX_IN_FLIGHT) -> None:
        self.limit = limit
        self._ready = threading.Condition()
        self._in_flight = 0
        self._not_before = 0.0
        #: The most slots ever taken at once (for the bench and the tests).
        self.peak = 0
        #: Requests sent, and seconds spent waiting for Graph's Retry-After.
        self.sent = 0
        self.waited = 0.0

    @contextmanager
    def slot(self, weight: int = 1) -> Iterator[None]:
        """Hold ``weight`` slots (at most :attr:`limit`) while one request is in flight."""
        weight = max(1, min(weight, self.limit))
        with self._ready:
            while True:
                pause = self._not_before - time.monotonic()
                if pause <= 0 and self._in_flight + weight <= self.limit:
                    break
                self._ready.wait(timeout=pause if pause > 0 else None)
            self._in_flight += weight
            self.peak = max(self.peak, self._in_flight)
            self.sent += 1
        try:
            yield
        finally:
            with self._ready:
                self._in_flight -= weight
                self._ready.notify_all()

    def hold_off(self, seconds: float) -> None:
        """No request to this mailbox starts for ``seconds`` (Graph's ``Retry-After``)."""
        with self._ready:
            self._not_before = max(self._not_before, time.monotonic() + seconds)
            self.waited += seconds
            self._ready.notify_all()


_lock = threading.Lock()
_governors: dict[tuple[str, str], Governor] = {}


def governor_for(base_url: str, mailbox: str) -> Governor:
    """The process's governor for ``mailbox`` at ``base_url`` (one per mailbox, shared by all sessions)."""
    key = (base_url.lower(), mailbox.lower())
    with _lock:
        found = _governors.get(key)
        if found is None:
            found = _governors[key] = Governor()
        return found
