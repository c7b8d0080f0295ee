"""Watching EWS folders with pull notifications (Subscribe, GetEvents): a change check of one small request.

The first check of a folder subscribes to it; each later one asks GetEvents for what happened since the
last watermark. The token a check returns is the subscription's id and the count of arrivals, moves and
deletions seen through it, so it changes whenever mail arrives in or leaves the folder, and whenever the
subscription is new: the connection is new, or the server forgot the subscription (a restart, a mailbox
move, or no check within :data:`SUBSCRIPTION_MINUTES`). The caller then lists the folder, so nothing that
happened while no subscription was there is missed. Read-status and other changes of an item are not
counted (as IMAP's STATUS without CONDSTORE does not count them).

A server that refuses the subscription (an administrator's throttling policy may allow none) is listed
at every check instead, as without notifications, and says so once in the log.

Waiting asks GetEvents every :data:`PULL_EVERY` seconds: Exchange's pull notifications have no push.
exchangelib's own ``Folder.get_events`` asks again with the first watermark while ``MoreEvents`` is
set, so this module drives its ``GetEvents`` service and moves the watermark on itself.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from exchangelib import errors as ews_errors
from exchangelib.properties import StatusEvent
from exchangelib.services import GetEvents, SubscribeToPull, Unsubscribe

from postroom.errors import PostroomError
from postroom.logs import get_logger

__all__ = ["PULL_EVERY", "SUBSCRIPTION_MINUTES", "FolderEvents"]

_log = get_logger("postroom.ews")

#: Seconds between two GetEvents while waiting for a change.
PULL_EVERY = 2.0
#: A subscription that is not asked for events within this many minutes is dropped by the server.
SUBSCRIPTION_MINUTES = 30
#: What counts as a change of a folder's contents.
EVENT_KINDS = ("NewMailEvent", "CreatedEvent", "MovedEvent", "CopiedEvent", "DeletedEvent")
#: The server no longer knows the subscription or its watermark: subscribe again.
_LOST = (
    ews_errors.ErrorSubscriptionNotFound,
    ews_errors.ErrorInvalidSubscription,
    ews_errors.ErrorExpiredSubscription,
    ews_errors.ErrorInvalidWatermark,
    ews_errors.ErrorReadEventsFailed,
    ews_errors.ErrorSubscriptionUnsubsribed,  # (sic: exchangelib's spelling)
)


@dataclass
class _Pull:
    """One folder's subscription: where its events were read up to, and how many changes they held."""

    subscription_id: str
    watermark: str
    changes: int = 0

    @property
    def token(self) -> str:
        return f"ews-pull:{self.subscription_id}:{self.changes}"


class FolderEvents:
    """The pull subscriptions of one EWS connection, one per watched folder.

    ``run`` runs an exchangelib call with the connection's error mapping (the mailbox's ``_run``)."""

    def __init__(self, run: Callable[[Callable[[], Any]], Any]) -> None:
        self._run = run
        self._pulls: dict[str, tuple[_Pull, Any]] = {}
        #: Why the server refused a subscription, once it has: every check then lists the folder.
        self.refused: str | None = None
        self._checks = itertools.count()

    def state(self, name: str, folder: Any) -> str:
        """A token that changes whenever mail arrives in or leaves ``folder`` (exchangelib's, listed as ``name``);
        a new one at every call when the server refuses subscriptions."""
        if self.refused is None:
            current = self._current(name, folder)
            if current is not None:
                return current[0].token
        return f"ews-no-pull:{id(self)}:{next(self._checks)}"

    def wait(self, name: str, folder: Any, timeout: float, stop: threading.Event) -> bool:
        """Ask for events every :data:`PULL_EVERY` seconds for up to ``timeout``, or until ``stop`` is set; True
        once there were some (or the subscription had to be made anew, which the next :meth:`state` reports as
        a change)."""
        deadline = time.monotonic() + timeout
        known = self._pulls.get(name)
        before = known[0].token if known is not None else None
        while True:
            current = self._current(name, folder) if self.refused is None else None
            if current is None:  # no notifications: wait the whole interval, then the caller lists
                return not stop.wait(max(0.0, deadline - time.monotonic()))
            pull, fresh = current
            if fresh or pull.token != before:
                return True
            left = deadline - time.monotonic()
            if left <= 0 or stop.wait(min(PULL_EVERY, left)):
                return False

    def close(self) -> None:
        """End every subscription (the server would drop them after their timeout anyway)."""
        pulls, self._pulls = self._pulls, {}
        for pull, folder in pulls.values():

            def end(pull: _Pull = pull, folder: Any = folder) -> None:
                Unsubscribe(account=folder.account).get(subscription_id=pull.subscription_id)

            with contextlib.suppress(PostroomError):
                self._run(end)

    def _current(self, name: str, folder: Any) -> tuple[_Pull, bool] | None:
        """The folder's subscription with its events read, and whether it was made just now; None when the
        server refuses subscriptions (:attr:`refused` says why)."""
        known = self._pulls.get(name)
        if known is not None and known[1].id == folder.id and self._read_events(known[0], folder):
            return known[0], False
        if known is not None:
            _log.info("EWS: the subscription to %s was lost; subscribing again and listing the folder", name)

        def subscribe() -> tuple[str, str] | str:
            try:
                found: tuple[str, str] = SubscribeToPull(account=folder.account).get(
                    folders=[folder], event_types=EVENT_KINDS, watermark=None, timeout=SUBSCRIPTION_MINUTES
                )
            except ews_errors.ResponseMessageError as refused:  # the server's answer, not a lost connection
                return f"{type(refused).__name__}: {refused}"
            return found

        answer = self._run(subscribe)
        if isinstance(answer, str):
            self.refused = answer
            _log.warning("EWS refused a pull subscription (%s); each check lists the folder instead", answer[:200])
            return None
        subscription_id, watermark = answer
        pull = _Pull(subscription_id, watermark)
        self._pulls[name] = (pull, folder)
        return pull, True

    def _read_events(self, pull: _Pull, folder: Any) -> bool:
        """Read the events since the pull's watermark into it; False when the server lost the subscription."""

        def read() -> tuple[int, str] | None:
            service = GetEvents(account=folder.account)
            changes, watermark = 0, pull.watermark
            while True:
                try:
                    notification = service.get(subscription_id=pull.subscription_id, watermark=watermark)
                except _LOST:
                    return None
                for event in notification.events or ():
                    watermark = event.watermark or watermark
                    if not isinstance(event, StatusEvent):
                        changes += 1
                if not notification.more_events:
                    return changes, watermark

        found = self._run(read)
        if found is None:
            return False
        pull.changes += found[0]
        pull.watermark = found[1]
        return True
