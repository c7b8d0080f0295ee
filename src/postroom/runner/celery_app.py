"""Scale-out on Celery: ``postroom worker bot.yaml`` processes, ``postroom run --celery bot.yaml`` schedules.

The queue carries only "poll mailbox M" and "process waiting messages of mailbox M"; which message is done,
and who may touch it, is the ledger's (fenced claims, the journal, the outbox). So Celery's at-least-once
delivery is safe: a task delivered twice, or again after its worker was killed, finds the messages done or
claimed and does nothing. One poll per mailbox runs at a time, held by the mailbox's lease in the ledger.

Tasks are acknowledged late and given back when their worker dies (``acks_late``,
``task_reject_on_worker_lost``), one at a time per process (``prefetch_multiplier=1``); the scheduler polls
every mailbox again each interval, which hands out what a killed worker left once its claims expire.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from postroom.errors import ConfigError, PostroomError
from postroom.logs import get_logger
from postroom.runner.definition import BotDefinition, load_bot
from postroom.runner.engine import CLAIM_BATCH, Engine, Outcome
from postroom.runner.ledger import Ledger
from postroom.runner.local import RunReport
from postroom.session import Runtime, Session
from postroom.transports.contract import Watches

__all__ = ["DEFAULT_BROKER", "make_app", "schedule", "start_worker"]

_log = get_logger("postroom.runner.celery")

DEFAULT_BROKER = "redis://localhost:6379/0"
#: Process tasks a poll hands out at most (each takes up to CLAIM_BATCH messages).
MAX_TASKS_PER_POLL = 64

_settings: dict[str, Any] = {"file": os.environ.get("POSTROOM_BOT_FILE"), "variables": {}}


class _WorkerState:
    """What one worker process keeps between tasks: the bot, the ledger, an engine, connections per thread."""

    def __init__(self) -> None:
        file = _settings["file"]
        if not file:
            raise ConfigError("bot", "the worker was started without a bot file", hint="postroom worker bot.yaml")
        self.definition = load_bot(file)
        self.ledger = Ledger.open(self.definition.ledger, power_safe=self.definition.durability == "power")
        self.engine = Engine(self.definition, self.ledger, variables=_settings["variables"])
        self.local = threading.local()
        self.pid = os.getpid()

    def session(self, index: int) -> Session:
        sessions: dict[int, Session] = getattr(self.local, "sessions", None) or {}
        self.local.sessions = sessions
        found = sessions.get(index)
        if found is None or found.state != "open":
            box, _ = self.engine.mailboxes()[index]
            runtime = Runtime(name=f"celery-{index}", variables=box.variables)
            found = sessions[index] = self.engine.connect(runtime, box)
        return found

    def owner(self) -> str:
        owner = getattr(self.local, "owner", None)
        if owner is None:
            owner = self.local.owner = self.ledger.register_worker(self.definition.name, "celery")
        return cast(str, owner)


_state: _WorkerState | None = None
_state_lock = threading.Lock()


def _worker_state() -> _WorkerState:
    global _state
    with _state_lock:
        if _state is None or _state.pid != os.getpid():  # made anew in each forked child
            _state = _WorkerState()
        return _state


def make_app(definition: BotDefinition) -> Any:
    """The Celery app of a bot: its broker, its queue, the safe delivery settings, the two tasks."""
    try:
        from celery import Celery
    except ImportError:
        from postroom.errors import MissingExtraError

        raise MissingExtraError("Celery workers", "celery", "celery") from None
    if any(spec.embedded for spec in definition.sessions):
        raise ConfigError(
            "session.embedded",
            "the embedded server lives inside `postroom run`; Celery workers need a mail server of their own",
            hint="run without --celery, or point the session at a real server",
        )
    app = Celery(f"postroom-{definition.name}", broker=definition.broker or DEFAULT_BROKER)
    queue = f"postroom.{definition.name}"
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )

    @app.task(name="postroom.poll")  # type: ignore[untyped-decorator]
    def poll(index: int) -> int:
        return _poll(app, index)

    @app.task(name="postroom.process")  # type: ignore[untyped-decorator]
    def process(index: int) -> int:
        return _process(app, index)

    return app


def _poll(app: Any, index: int) -> int:
    """Discover mailbox ``index`` under its lease, then hand out its waiting messages; 0 if another poll runs."""
    state = _worker_state()
    box, mailbox_id = state.engine.mailboxes()[index]
    owner = state.owner()
    state.ledger.reclaim_from_dead(state.definition.name)  # a worker killed on this host: its claims wait again
    fence = state.ledger.take_lease(mailbox_id, owner, max(60.0, 3 * state.definition.watch.reconcile))
    if fence is None:
        return 0
    try:
        state.engine.discover(state.session(index), box, mailbox_id, trigger="celery")
    except PostroomError as exc:
        state.ledger.heard_from_server(mailbox_id, trigger="celery", error=str(exc.problem)[:500])
        raise
    finally:
        state.ledger.release_lease(mailbox_id, owner)
    waiting = len(state.ledger.waiting([mailbox_id]))
    tasks = min(MAX_TASKS_PER_POLL, math.ceil(waiting / CLAIM_BATCH))
    for _ in range(tasks):
        app.send_task("postroom.process", args=[index])
    return tasks


def _process(app: Any, index: int) -> int:
    """Claim up to a batch of mailbox ``index``'s waiting messages and run the steps; more work, another task."""
    state = _worker_state()
    box, mailbox_id = state.engine.mailboxes()[index]
    claims = state.ledger.claim([mailbox_id], state.owner(), limit=CLAIM_BATCH, lease=state.definition.claim_lease)
    if not claims:
        return 0
    try:
        session = state.session(index)
    except PostroomError:
        for claim in claims:
            state.ledger.release(claim)
        raise
    outcome = state.engine.process(session, box, claims)
    if len(claims) == CLAIM_BATCH:
        app.send_task("postroom.process", args=[index])
    return outcome.done


def start_worker(bot_file: str, *, concurrency: int | None, pool: str, variables: Mapping[str, str]) -> None:
    """Run a Celery worker for the bot in ``bot_file`` (blocks)."""
    definition = load_bot(bot_file)
    _settings["file"] = str(Path(bot_file).resolve())
    _settings["variables"] = dict(variables)
    os.environ["POSTROOM_BOT_FILE"] = _settings["file"]
    Ledger.open(
        definition.ledger, power_safe=definition.durability == "power"
    ).close()  # migrated once here, before the children start
    app = make_app(definition)
    argv = [
        "worker",
        f"--concurrency={concurrency or definition.workers}",
        f"--pool={pool}",
        f"--queues=postroom.{definition.name}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=WARNING",
    ]
    app.worker_main(argv)


def schedule(
    definition: BotDefinition,
    bot_file: str,
    *,
    watch: bool,
    stop: threading.Event,
    variables: Mapping[str, str],
) -> RunReport:
    """``postroom run --celery``: send a poll of each mailbox every interval (and, watching, as soon as IDLE
    reports new mail); without ``watch``, until every message found is done or failed for good."""
    app = make_app(definition)
    ledger = Ledger.open(definition.ledger, power_safe=definition.durability == "power")
    engine = Engine(definition, ledger, variables=variables)
    started = time.time()
    report = RunReport(definition.name)
    boxes = engine.mailboxes()
    ids = [mailbox_id for _, mailbox_id in boxes]
    wake = threading.Event()
    watchers = [
        threading.Thread(target=_idle, args=(engine, index, wake, stop), daemon=True, name=f"postroom-idle-{index}")
        for index in range(len(boxes))
        if watch and definition.watch.idle
    ]
    for thread in watchers:
        thread.start()
    interval = definition.watch.reconcile if watch else min(5.0, definition.watch.reconcile)
    polled_once = False
    warned = started
    try:
        while not stop.is_set():
            try:
                for index in range(len(boxes)):
                    app.send_task("postroom.poll", args=[index], expires=max(interval, 30.0))
                polled_once = True
            except Exception as exc:  # the broker is away (a restart): try again next interval
                _log.warning("cannot reach the broker: %s; trying again in %.0fs", type(exc).__name__, interval)
            unpolled = _why_not_polled(ledger, boxes, started, bot_file)
            if not watch and polled_once and not unpolled and not ledger.unfinished(ids):
                break
            if unpolled and time.time() - warned > 60:
                warned = time.time()
                _log.warning(
                    "after %.0fs, not every mailbox has been polled yet: %s",
                    warned - started,
                    "; ".join(unpolled),
                )
            wake.wait(interval)
            wake.clear()
    except KeyboardInterrupt:
        stop.set()
    finally:
        stop.set()
        engine.close()
        _close(app)
    try:
        report.counts = ledger.counts(definition.name)
        activity = ledger.activity_since(definition.name, started)
    finally:
        ledger.close()
    report.new = activity["new"]
    report.outcome = Outcome(done=activity["done"], failed=activity["failed"])
    report.seconds = time.time() - started
    return report


def _close(app: Any) -> None:
    """Let go of the broker connections (a pool left open can hold the process at exit after a broker restart)."""
    with contextlib.suppress(Exception):
        app.pool.force_close_all()
    with contextlib.suppress(Exception):
        app.close()


def _why_not_polled(ledger: Ledger, boxes: list[tuple[Any, int]], started: float, bot_file: str) -> list[str]:
    """For each mailbox not polled since ``started``: a poll is under way (a first poll of a large folder
    takes a while), the last one failed (and why), or no worker has taken one."""
    now = time.time()
    reasons = []
    for box, mailbox_id in boxes:
        row = ledger.mailbox_row(mailbox_id)
        if (row["last_checked_at"] or 0) >= started:
            continue
        where = f"{box.identity} {box.folder}"
        if (row["lease_until"] or 0) >= now:
            reasons.append(f"{where}: a poll is under way ({row['lease_owner']})")
        elif row["last_error"]:
            reasons.append(f"{where}: its last poll failed: {row['last_error']}")
        else:
            reasons.append(
                f"{where}: no worker has polled it; is `postroom worker {bot_file}` running on the same broker?"
            )
    return reasons


def _idle(engine: Engine, index: int, wake: threading.Event, stop: threading.Event) -> None:
    """Wake the scheduler as soon as IMAP IDLE reports a change in mailbox ``index``."""
    box, _ = engine.mailboxes()[index]
    runtime = Runtime(name=f"idle-{index}", variables=box.variables)
    spec = engine.definition.watch
    wait = min(spec.reconcile, spec.idle_restart, spec.noop)
    folder = box.folder

    def idle(mailbox: Any) -> bool:
        return cast(Watches, mailbox).wait_for_change(folder, wait, stop)

    while not stop.is_set():
        try:
            session = engine.sessions.connect(runtime, box, f"idle-{index}")
            if not session.can(Watches):
                return
            while not stop.is_set():
                if session.call(idle):
                    wake.set()
        except PostroomError as exc:
            _log.warning("IDLE on %s: %s; reconnecting", box.identity, exc.problem)
            stop.wait(5.0)
    runtime.disconnect_all()
