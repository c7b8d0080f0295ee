"""The embedded runner: ``postroom run bot.yaml`` in one process, no broker.

A watcher per mailbox holds the mailbox's poll lease and discovers new mail (once, or with ``--watch``
for good: IMAP IDLE re-issued well inside the server's limit, plus a STATUS reconcile every interval that
catches what a silent IDLE missed, and a reconnect when the server has not been heard from). A pool of
worker threads, each with its own connections, claims waiting messages from the ledger and runs the steps.
The Celery worker runs the same :class:`~postroom.runner.engine.Engine`.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, cast

from postroom.errors import AuthenticationError, ConfigError, CredentialError, PostroomError
from postroom.logs import get_logger
from postroom.runner import metrics
from postroom.runner.definition import BotDefinition
from postroom.runner.engine import CLAIM_BATCH, Engine, Outcome
from postroom.runner.ledger import Ledger
from postroom.runner.sessions import BotMailbox
from postroom.session import Runtime, Session
from postroom.transports.contract import Watches

__all__ = ["EXIT_CODES", "LocalRunner", "MailboxWatcher", "RunProgress", "RunReport"]

_log = get_logger("postroom.runner")

#: A run without --watch waits for a failed message's next try when it is due within this many seconds.
RETRY_WITHIN_RUN = 60.0

#: ``postroom run``'s exit codes.
EXIT_CODES = {"done": 0, "some_failed": 1, "could_not_connect": 6, "ledger": 11, "config": 3, "internal": 70}


class RunProgress(Protocol):
    """Told how a run gets on (the CLI draws bars from it): the first discovery chunk by chunk, then the
    messages handled (done, failed, taken over or skipped) of those waiting when processing began."""

    def discovered(self, mailbox: str, looked_at: int, of: int) -> None: ...

    def processed(self, handled: int, of: int) -> None: ...


@dataclass
class RunReport:
    """What a run did, and the exit code that says it."""

    bot: str
    new: int = 0
    outcome: Outcome = field(default_factory=Outcome)
    connect_errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        if self.outcome.internal:
            return EXIT_CODES["internal"]
        if self.connect_errors:
            return EXIT_CODES["could_not_connect"]
        if self.outcome.failed or self.outcome.retrying:
            return EXIT_CODES["some_failed"]
        return EXIT_CODES["done"]

    def to_dict(self) -> dict[str, object]:
        return {
            "bot": self.bot,
            "new": self.new,
            "done": self.outcome.done,
            "failed": self.outcome.failed,
            "retrying": self.outcome.retrying,
            "taken_over": self.outcome.lost,
            "skipped": self.outcome.skipped,
            "errors": self.outcome.errors,
            "could_not_connect": self.connect_errors,
            "ledger": self.counts,
            "seconds": round(self.seconds, 2),
            "exit_code": self.exit_code,
        }


class MailboxWatcher:
    """Holds one mailbox's poll lease and keeps discovering: once, or until ``stop`` with ``watch``.

    ``on_change`` runs after each discovery that found something (the runner wakes its workers; the
    Celery scheduler sends work)."""

    def __init__(
        self,
        engine: Engine,
        box: BotMailbox,
        mailbox_id: int,
        *,
        on_change: Callable[[int], None] = lambda _count: None,
    ) -> None:
        self.engine = engine
        self.box = box
        self.mailbox_id = mailbox_id
        self.on_change = on_change
        self.owner = engine.ledger.register_worker(engine.definition.name, "watcher")
        self.fence: int | None = None
        self.runtime = Runtime(name=f"watch-{box.spec.name}", variables=box.variables)
        self.session: Session | None = None
        self.last_heard = 0.0

    def _lease_seconds(self) -> float:
        return max(30.0, 3 * self.engine.definition.watch.reconcile)

    def discover_once(
        self, *, trigger: str = "poll", force: bool = False, on_chunk: Callable[[int, int], None] | None = None
    ) -> int:
        """One discovery under the lease; 0 when another runner holds it (it discovers for both)."""
        self.fence = self.engine.ledger.take_lease(self.mailbox_id, self.owner, self._lease_seconds())
        if self.fence is None:
            return 0
        if self.session is None or self.session.state != "open":
            self.session = self.engine.connect(self.runtime, self.box)
        session = self.session
        found = self.engine.discover(
            session, self.box, self.mailbox_id, trigger=trigger, force=force, on_chunk=on_chunk
        )
        self.last_heard = time.time()
        metrics.set_trigger_lag(self.engine.definition.name, self.box.identity, 0.0)
        if found:
            self.on_change(found)
        return found

    def watch(self, stop: threading.Event) -> None:
        """Discover until ``stop``: IDLE where offered, else a poll every reconcile interval."""
        spec = self.engine.definition.watch
        failures = 0
        while not stop.is_set():
            try:
                self.discover_once(trigger="idle" if spec.idle else "poll")
                failures = 0
                self._wait(stop)
                if self.fence is not None:
                    self.discover_once(trigger="idle" if spec.idle else "poll")
            except (ConfigError, CredentialError, AuthenticationError) as exc:
                self._trouble(exc)
                stop.wait(min(300.0, spec.reconcile * 5))
            except PostroomError as exc:
                failures += 1
                self._trouble(exc)
                self._reconnect()
                stop.wait(min(60.0, 2**failures) * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
            except Exception as exc:  # a bug must not silently end the trigger: report it, keep watching
                failures += 1
                _log.exception("trigger for %s %s failed", self.box.identity, self.box.folder)
                self._trouble(PostroomError(f"internal error: {type(exc).__name__}: {exc}"))
                self._reconnect()
                stop.wait(min(60.0, 2**failures))
            self._check_stale()
        self.engine.ledger.release_lease(self.mailbox_id, self.owner)
        self.runtime.disconnect_all()

    def _wait(self, stop: threading.Event) -> None:
        """Until the server reports a change, or the reconcile interval passes (IDLE capped at the re-issue and
        NOOP intervals, so a dead connection is found within them)."""
        spec = self.engine.definition.watch
        session = self.session
        wait = min(spec.reconcile, spec.idle_restart, spec.noop)
        if self.fence is not None and spec.idle and session is not None and session.can(Watches):
            folder = self.box.folder
            session.call(lambda mailbox: cast(Watches, mailbox).wait_for_change(folder, wait, stop))
            self.last_heard = time.time()
        else:
            stop.wait(wait)

    def _trouble(self, exc: PostroomError) -> None:
        _log.warning("trigger for %s %s: %s", self.box.identity, self.box.folder, exc.problem)
        with contextlib.suppress(PostroomError):  # the ledger being away too is reported by the workers
            self.engine.ledger.heard_from_server(self.mailbox_id, trigger="watch", error=str(exc.problem)[:500])

    def _reconnect(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def _check_stale(self) -> None:
        silent = time.time() - self.last_heard if self.last_heard else 0.0
        metrics.set_trigger_lag(self.engine.definition.name, self.box.identity, silent)
        if self.last_heard and silent > self.engine.definition.watch.stale_after:
            _log.warning(
                "trigger for %s %s has not heard from its server for %.0fs; reconnecting",
                self.box.identity,
                self.box.folder,
                silent,
            )
            self._reconnect()


class LocalRunner:
    """Runs a bot in this process: watchers and a pool of worker threads over one ledger."""

    def __init__(
        self,
        definition: BotDefinition,
        *,
        ledger: Ledger | None = None,
        variables: Mapping[str, str] | None = None,
        workers: int | None = None,
        progress: RunProgress | None = None,
    ) -> None:
        self.definition = definition
        self.progress = progress
        self._owns_ledger = ledger is None
        self.ledger = ledger or Ledger.open(definition.ledger, power_safe=definition.durability == "power")
        self.engine = Engine(definition, self.ledger, variables=variables)
        self.workers = workers or definition.workers
        self._wake = threading.Event()

    def run(self, *, watch: bool = False, stop: threading.Event | None = None) -> RunReport:
        started = time.monotonic()
        stop = stop or threading.Event()
        report = RunReport(self.definition.name)
        try:
            self.ledger.reclaim_from_dead(self.definition.name)
            boxes = self.engine.mailboxes()
            watchers = [
                MailboxWatcher(self.engine, box, mailbox_id, on_change=self._woken) for box, mailbox_id in boxes
            ]
            for watcher in watchers:
                told = self._discovery_told(watcher.box.identity)
                try:
                    report.new += watcher.discover_once(force=True, on_chunk=told)
                except (ConfigError, CredentialError):
                    raise
                except PostroomError as exc:
                    report.connect_errors.append(f"{watcher.box.identity}: {exc.problem}")
                    _log.error("cannot reach %s: %s", watcher.box.identity, exc)
            if report.connect_errors and len(report.connect_errors) == len(watchers) and not watch:
                return report
            threads = [
                threading.Thread(target=w.watch, args=(stop,), name=f"postroom-watch-{i}", daemon=True)
                for i, w in enumerate(watchers)
                if watch
            ]
            outcomes = [Outcome() for _ in range(self.workers)]
            pool = [
                threading.Thread(
                    target=self._work, args=(outcomes[i], stop, watch), name=f"postroom-worker-{i}", daemon=True
                )
                for i in range(self.workers)
            ]
            waiting = self._waiting() if self.progress is not None else 0
            for thread in [*threads, *pool]:
                thread.start()
            try:
                for thread in pool:
                    while thread.is_alive():
                        thread.join(0.5)
                        self._tell_processed(outcomes, waiting)
                self._tell_processed(outcomes, waiting)
            except KeyboardInterrupt:
                _log.warning("stopping: workers finish the message they are on")
                stop.set()
                for thread in pool:
                    thread.join()
            stop.set()
            for thread in threads:
                thread.join(10)
            for watcher in watchers:
                self.ledger.release_lease(watcher.mailbox_id, watcher.owner)
                watcher.runtime.disconnect_all()
            for outcome in outcomes:
                report.outcome.add(outcome)
            report.counts = self.ledger.counts(self.definition.name)
            return report
        finally:
            report.seconds = time.monotonic() - started
            self.engine.close()
            if self._owns_ledger:
                self.ledger.close()

    def _discovery_told(self, mailbox: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        if progress is None:
            return None
        return lambda looked_at, of: progress.discovered(mailbox, looked_at, of)

    def _waiting(self) -> int:
        """Messages waiting to be processed now (the processing bar's length)."""
        counts = self.ledger.counts(self.definition.name)
        return counts.get("seen", 0) + counts.get("claimed", 0)

    def _tell_processed(self, outcomes: list[Outcome], waiting: int) -> None:
        if self.progress is not None:
            handled = sum(o.done + o.failed + o.lost + o.skipped for o in outcomes)
            self.progress.processed(handled, max(waiting, handled))

    def _woken(self, _count: int) -> None:
        self._wake.set()

    def _work(self, outcome: Outcome, stop: threading.Event, watch: bool) -> None:
        """One worker thread: claim a batch, process it, until nothing is left (or, watching, until stopped)."""
        ledger = self.ledger
        owner = ledger.register_worker(self.definition.name, "thread")
        runtime = Runtime(name=f"worker-{owner}", variables=self.engine.sessions.variables)
        sessions: dict[int, Session] = {}
        boxes = self.engine.mailboxes()
        last_beat = 0.0
        try:
            while not stop.is_set():
                worked = False
                for box, mailbox_id in boxes:
                    if stop.is_set():
                        break
                    claims = ledger.claim([mailbox_id], owner, limit=CLAIM_BATCH, lease=self.definition.claim_lease)
                    if not claims:
                        continue
                    worked = True
                    try:
                        session = sessions.get(mailbox_id)
                        if session is None or session.state != "open":
                            session = sessions[mailbox_id] = self.engine.connect(
                                Runtime(name=f"{owner}-{mailbox_id}", variables=box.variables), box
                            )
                    except PostroomError as exc:
                        for claim in claims:
                            ledger.release(claim)
                        outcome.errors.append(f"{box.identity}: {exc.problem}")
                        stop.wait(2.0)
                        continue
                    try:
                        outcome.add(self.engine.process(session, box, claims))
                    except Exception as exc:  # a bug: never a silent end of the worker with claims in hand
                        _log.exception("internal error while processing a batch of %s", box.identity)
                        outcome.internal += 1
                        outcome.errors.append(f"internal error: {type(exc).__name__}: {exc}")
                        for claim in claims:
                            with contextlib.suppress(PostroomError):
                                ledger.release(claim)  # those the batch had not finished wait again
                        stop.wait(1.0)
                if time.time() - last_beat > 10:
                    ledger.worker_alive(owner)
                    last_beat = time.time()
                if not worked:
                    if not watch:
                        due = ledger.next_retry_in([mailbox_id for _, mailbox_id in boxes])
                        if due is None or due > RETRY_WITHIN_RUN:
                            return  # a later try is the next run's
                        stop.wait(due + 0.01)
                        continue
                    self._wake.wait(1.0)
                    self._wake.clear()
        finally:
            for session in sessions.values():
                session.close()
            runtime.disconnect_all()
