"""The bot's two jobs, shared by the embedded runner and the Celery worker: **discover** what is new in a
mailbox (into the ledger as ``seen``) and **process** claimed messages through the steps.

Correctness lives here and in the ledger, never in a queue: a task delivered twice, a worker killed
mid-step, a claim that expired, a folder renumbered (UIDVALIDITY) all end with each message done once.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import traceback
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from postroom.actions.folders import create_folder, folders
from postroom.actions.loop import SessionSource, matches
from postroom.actions.manage import move
from postroom.errors import ConfigError, PostroomError
from postroom.logs import get_logger
from postroom.message.keys import MessageKey
from postroom.message.model import Message
from postroom.message.summary import MessageSummary
from postroom.runner import metrics
from postroom.runner.definition import BotDefinition
from postroom.runner.ledger import Claim, Ledger, LostClaimError, Seen
from postroom.runner.sessions import BotMailbox, BotSessions
from postroom.runner.steps import (
    DeliveryHeldError,
    Job,
    move_all,
    moved_detail,
    record_step,
    renewal_due,
    run_steps,
    sent_copy_mode,
)
from postroom.session import Runtime, Session
from postroom.transports.contract import Appends, ClaimsOnServer, CreatesFolders, Folders, Syncs, Watches

__all__ = ["Engine", "Outcome"]

_log = get_logger("postroom.runner")

#: Messages a worker claims at once (their summaries come in one request).
CLAIM_BATCH = 25
#: Summaries fetched per request while discovering.
DISCOVER_CHUNK = 500
#: Summaries discovery keeps for the workers of this process (the oldest go first).
KEEP_FETCHED = 2000


@dataclass
class Outcome:
    """What a worker did with the items it claimed."""

    done: int = 0
    failed: int = 0
    retrying: int = 0
    lost: int = 0
    #: Left to another deployment that claimed them on the mail server (``server_claim``).
    skipped: int = 0
    #: Errors in postroom itself (a bug): the batch's messages were given back, the run says so.
    internal: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.done += other.done
        self.failed += other.failed
        self.retrying += other.retrying
        self.lost += other.lost
        self.skipped += other.skipped
        self.internal += other.internal
        self.errors += other.errors[-20:]


class Engine:
    """Discovery and processing for one bot, in one process. Each thread uses its own sessions."""

    def __init__(
        self, definition: BotDefinition, ledger: Ledger, *, variables: Mapping[str, str] | None = None
    ) -> None:
        self.definition = definition
        self.ledger = ledger
        self.sessions = BotSessions(definition, variables=variables)
        self.run_id = uuid.uuid4().hex[:12]
        self._ids: dict[str, int] = {}
        self._rejected: dict[int, set[str]] = defaultdict(set)
        self._prepared: set[tuple[int, int]] = set()
        #: Summaries discovery fetched, for processing in this process (saves fetching them twice).
        #: Keyed by (mailbox, key): two mailboxes made in the same second share a UIDVALIDITY, so keys repeat.
        self._fetched: OrderedDict[tuple[int, str], MessageSummary] = OrderedDict()
        self._fetched_lock = threading.Lock()

    def mailboxes(self) -> list[tuple[BotMailbox, int]]:
        """Each mailbox with its ledger row."""
        found = []
        for box in self.sessions.mailboxes():
            key = f"{box.identity}\n{box.folder}"
            if key not in self._ids:
                self._ids[key] = self.ledger.mailbox_id(self.definition.name, box.identity, box.folder)
            found.append((box, self._ids[key]))
        return found

    def connect(self, runtime: Runtime, box: BotMailbox) -> Session:
        session = self.sessions.connect(runtime, box, box.spec.name)
        self._prepare(session, box)
        return session

    def _prepare(self, session: Session, box: BotMailbox) -> None:
        """Make the folders the steps move to (once per connection): a missing Processed is no failure."""
        marker = (id(session), session.reconnects)
        if marker in self._prepared or not session.can(CreatesFolders):
            return
        targets = [step.options["folder"] for step in self.definition.steps if step.kind == "move"]
        if self.definition.on_failure.then == "move" and self.definition.on_failure.folder:
            targets.append(self.definition.on_failure.folder)
        existing = {folder.name.casefold() for folder in folders(session)} if session.can(Folders) else set()
        for folder in dict.fromkeys(targets):
            if "/".join(p for p in folder.split("/") if p).casefold() not in existing:
                create_folder(session, folder)
        self._prepared.add(marker)

    def close(self) -> None:
        self.sessions.close()

    # -- discovery ------------------------------------------------------------------------------------

    def discover(
        self,
        session: Session,
        box: BotMailbox,
        mailbox_id: int,
        *,
        trigger: str,
        force: bool = False,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> int:
        """Record what is new in the folder; returns how many new messages were found. With a server that
        reports folder state (IMAP STATUS), an unchanged folder costs one round trip. ``on_chunk(looked_at,
        of)`` is told after each chunk of summaries how many of the keys not yet in the ledger were read."""
        loop = self.definition.loop
        one_folder = loop.covers_one_folder  # a folder's state and sync position speak for it alone
        token = None
        if one_folder and session.can(Watches):
            token = session.call(lambda mailbox: cast(Watches, mailbox).folder_state(box.folder))
            if not force and token == self.ledger.mailbox_row(mailbox_id)["state_token"]:
                self.ledger.heard_from_server(mailbox_id, trigger=trigger)
                return 0
        known = self.ledger.known_keys(mailbox_id)
        rejected = self._rejected[mailbox_id]
        found: list[Seen] = []
        after: dict[str, object] | None = None
        if one_folder and session.can(Syncs):
            # only what is new since the saved position (Graph delta); kept once the new items are recorded
            saved = self.ledger.mailbox_row(mailbox_id)["position"]
            position = json.loads(saved) if saved else None
            run, after = session.call(lambda mailbox: cast(Syncs, mailbox).changes(loop, position))
            runs = [run]
        else:
            runs = session.call(lambda mailbox: mailbox.search(loop))
        unknown = [[k for k in run.keys(0) if str(k) not in known and str(k) not in rejected] for run in runs]
        looked_at, of = 0, sum(len(keys) for keys in unknown)
        for keys in unknown:
            for start in range(0, len(keys), DISCOVER_CHUNK):
                chunk = keys[start : start + DISCOVER_CHUNK]
                summaries = session.call(lambda mailbox, c=chunk: mailbox.summaries(c))  # type: ignore[misc]
                source = SessionSource(session)
                for summary in summaries:
                    message = Message(summary, source)
                    if not matches(loop, message):
                        rejected.add(str(summary.key))
                        continue
                    found.append(_seen(message))
                    self._keep(mailbox_id, summary)
                looked_at += len(chunk)
                if on_chunk is not None:
                    on_chunk(looked_at, of)
        added, _remapped = self.ledger.record_seen(mailbox_id, found)
        if after is not None:
            self.ledger.save_position(mailbox_id, after)
        self.ledger.heard_from_server(mailbox_id, trigger=trigger, state_token=token)
        if added:
            _log.info("%s %s: %d new message(s)", box.identity, box.folder, added, extra=self._extra(None))
        return added

    # -- processing -----------------------------------------------------------------------------------

    def process(self, session: Session, box: BotMailbox, claims: list[Claim]) -> Outcome:
        """Run the steps on each claimed message of ``box``."""
        outcome = Outcome()
        if not claims:
            return outcome
        summaries = self._kept(claims[0].mailbox_id, [claim.key for claim in claims])
        by_folder: dict[str, list[MessageKey]] = defaultdict(list)
        for claim in claims:
            if claim.key not in summaries:
                key = MessageKey.parse(claim.key)
                by_folder[key.folder].append(key)
        try:
            for group in by_folder.values():
                for summary in session.call(lambda mailbox, g=group: mailbox.summaries(g)):  # type: ignore[misc]
                    summaries[str(summary.key)] = summary
        except PostroomError as exc:  # the server is away: every claim is tried again later
            for claim in claims:
                self._failed(claim, exc, outcome, session)
            return outcome
        together = self._moves_together()
        waiting = [
            job
            for claim in claims
            if (job := self._process_one(session, box, claim, summaries.get(claim.key), outcome, together))
        ]
        if waiting:
            self._move_together(session, waiting, outcome)
        return outcome

    def _moves_together(self) -> bool:
        """Whether the batch's last step runs as one bulk move: when it is a move (one command for the batch
        instead of several per message; each message is still journaled and finished on its own)."""
        steps = self.definition.steps
        return bool(steps) and steps[-1].kind == "move"

    def _move_together(self, session: Session, jobs: list[Job], outcome: Outcome) -> None:
        """The last step (a move) of every message whose other steps are done, in one bulk move; each result
        is journaled with its message's "done", and a message the move failed for is failed on its own."""
        index = len(self.definition.steps) - 1
        folder = self.definition.steps[index].options["folder"]
        ready = []
        for job in jobs:  # nothing is moved for a claim that was taken over while the batch ran
            try:
                job.check_claim()
                ready.append(job)
            except Exception as exc:
                self._settle_failure(job, exc, outcome, session)
        if not ready:
            return
        started = time.perf_counter()
        try:
            results = move_all(session, [job.mail for job in ready], folder)
        except Exception as exc:
            for job in ready:
                self._settle_failure(job, exc, outcome, session)
            return
        share = (time.perf_counter() - started) / len(ready)  # each message's part of the bulk move
        for job, result in zip(ready, results, strict=True):
            try:
                detail = moved_detail(result)
                record_step(job, index, detail, new_key=detail.pop("new_key", None), seconds=share)
                self._done(job.claim, job.log_extra, outcome)
            except Exception as exc:
                self._settle_failure(job, exc, outcome, session)

    def _settle_failure(self, job: Job, exc: Exception, outcome: Outcome, session: Session) -> None:
        """A message of a bulk move that did not finish: its claim was lost, or its move failed."""
        if isinstance(exc, LostClaimError):
            self._lost(job.claim, exc, outcome)
        else:
            self._failed(job.claim, exc, outcome, session)

    def _done(self, claim: Claim, extra: dict[str, object], outcome: Outcome) -> None:
        outcome.done += 1
        metrics.count_message(self.definition.name, "done")
        _log.info("%s: done", claim.key, extra=extra)

    def _lost(self, claim: Claim, lost: LostClaimError, outcome: Outcome) -> None:
        outcome.lost += 1
        metrics.count_claim_conflict(self.definition.name)
        _log.warning("%s: %s", claim.key, lost.problem, extra=self._extra(claim))

    def _keep(self, mailbox_id: int, summary: MessageSummary) -> None:
        with self._fetched_lock:
            self._fetched[(mailbox_id, str(summary.key))] = summary
            while len(self._fetched) > KEEP_FETCHED:
                self._fetched.popitem(last=False)

    def _kept(self, mailbox_id: int, keys: list[str]) -> dict[str, MessageSummary]:
        """The summaries of ``keys`` discovery fetched (each used once: a retry fetches a fresh one)."""
        with self._fetched_lock:
            return {key: found for key in keys if (found := self._fetched.pop((mailbox_id, key), None)) is not None}

    def _process_one(
        self,
        session: Session,
        box: BotMailbox,
        claim: Claim,
        summary: MessageSummary | None,
        outcome: Outcome,
        move_later: bool = False,
    ) -> Job | None:
        """Run the steps on one message; with ``move_later``, all but the last (a move), returning the job
        for :meth:`_move_together` when that move is still to do."""
        extra = self._extra(claim)
        try:
            # the claim may have waited in this batch: renewed (or found taken over) before anything is done
            renewed_at = claim.taken_at
            if renewal_due(renewed_at, self.definition.claim_lease):
                self.ledger.renew(claim, self.definition.claim_lease)
                renewed_at = time.time()
            effects = {} if claim.first else self.ledger.effects_of(claim.item_id)
            if self.definition.server_claim and "claim" not in effects:
                if summary is None or not self._claim_on_server(session, claim):
                    self.ledger.skip(claim, f"claimed on the mail server by another deployment ({self._keyword})")
                    outcome.skipped += 1
                    return None
                self.ledger.record_effect(claim, "claim", "claim", "done", detail={"keyword": self._keyword})
            if summary is None:
                self._gone(session, claim, effects, outcome)
                return None
            message = Message(summary, SessionSource(session))
            pattern = self.definition.subject_pattern
            job = Job(
                definition=self.definition,
                ledger=self.ledger,
                claim=claim,
                session=session,
                mail=message,
                match=pattern.search(message.subject) if pattern is not None else None,
                identity=box.identity,
                effects=effects,
                sent_copy=sent_copy_mode(self.definition, session),
                log_extra=extra,
                renewed_at=renewed_at,
            )
            last = str(len(self.definition.steps) - 1)
            if move_later and not (last in effects and effects[last].state == "done"):
                run_steps(job, upto=len(self.definition.steps) - 1)
                return job
            if not run_steps(job):
                self.ledger.finish(claim)
            self._done(claim, extra, outcome)
        except LostClaimError as lost:
            self._lost(claim, lost, outcome)
        except DeliveryHeldError as held:
            self._give_up(claim, session, held, outcome)
        except Exception as exc:  # a step's own code may raise anything; it is recorded, never lost
            self._failed(claim, exc, outcome, session)
        return None

    @property
    def _keyword(self) -> str:
        return f"$postroom.{self.definition.name}"

    def _claim_on_server(self, session: Session, claim: Claim) -> bool:
        if not session.can(ClaimsOnServer):
            raise ConfigError(
                "server_claim",
                f"a {session.label} session cannot claim messages on the server",
                hint="it needs IMAP with CONDSTORE; share one ledger between the deployments instead",
            )
        key, keyword = MessageKey.parse(claim.key), self._keyword
        mine = f"{keyword}.{self.ledger.deployment_tag()}"
        return bool(session.call(lambda mailbox: cast(ClaimsOnServer, mailbox).claim_on_server(key, keyword, mine)))

    def _gone(self, session: Session, claim: Claim, effects: Mapping[str, object], outcome: Outcome) -> None:
        """The message is no longer in its folder. Done if this bot's own move or delete took it before the
        last try stopped (the move's target holds its Message-ID; or the bot deletes and had started on it);
        otherwise someone else took it, and it is failed for a person to look at."""
        if self._taken_by_us(session, claim, effects):
            self.ledger.finish(claim)
            outcome.done += 1
            metrics.count_message(self.definition.name, "done")
            _log.info("%s: moved or deleted before the last try stopped; done", claim.key)
            return
        error = "the message is no longer in its folder (moved or deleted outside this bot)"
        self.ledger.fail(claim, error, retry_at=None)
        outcome.failed += 1
        outcome.errors.append(f"{claim.key}: {error}")
        metrics.count_message(self.definition.name, "failed")

    def _taken_by_us(self, session: Session, claim: Claim, effects: Mapping[str, object]) -> bool:
        if any(getattr(effect, "kind", "") in ("move", "delete") for effect in effects.values()):
            return True
        if claim.first:
            return False
        for step in self.definition.steps:
            if step.kind == "delete":
                return True
            if step.kind == "move" and claim.message_id and session.can(Appends):
                return _holds(session, step.options["folder"], claim.message_id)
        return False

    def _failed(self, claim: Claim, exc: BaseException, outcome: Outcome, session: Session) -> None:
        attempts = claim.attempts + 1
        policy = self.definition.on_failure
        if attempts <= policy.retries:
            text = _describe(exc)
            try:
                self.ledger.fail(claim, text, retry_at=time.time() + policy.wait(attempts))
            except LostClaimError:
                outcome.lost += 1
                return
            outcome.retrying += 1
            _log.warning(
                "%s: attempt %d failed (%s); trying again in %.0fs",
                claim.key,
                attempts,
                text,
                policy.wait(attempts),
                extra=self._extra(claim),
            )
            return
        self._give_up(claim, session, exc, outcome)

    def _give_up(self, claim: Claim, session: Session, exc: BaseException, outcome: Outcome) -> None:
        """No more tries: move the message to the failure folder if the bot says so, and alert."""
        text = _describe(exc)
        policy = self.definition.on_failure
        new_key = None
        if policy.then == "move" and policy.folder and not isinstance(exc, DeliveryHeldError):
            try:
                result = move(session, claim.key, policy.folder)[0]
                new_key = str(result.new_key) if result.new_key else None
                text += f"; moved to {policy.folder}"
            except PostroomError as move_error:
                text += f"; moving it to {policy.folder} failed too: {move_error.problem}"
        try:
            self.ledger.fail(claim, text, retry_at=None, new_key=new_key)
        except LostClaimError:
            outcome.lost += 1
            return
        outcome.failed += 1
        outcome.errors.append(f"{claim.key}: {text}")
        metrics.count_message(self.definition.name, "failed")
        _log.error(
            "ALERT %s: gave up on %s after %d attempt(s): %s",
            self.definition.name,
            claim.key,
            claim.attempts + 1,
            text,
            extra=self._extra(claim),
        )

    def _extra(self, claim: Claim | None) -> dict[str, object]:
        extra: dict[str, object] = {"bot": self.definition.name, "run": self.run_id}
        if claim is not None:
            extra["message_key"] = claim.key
        return extra


def _holds(session: Session, folder: str, message_id: str) -> bool:
    """Whether ``folder`` holds a message with ``message_id``."""
    return bool(session.call(lambda mailbox: cast(Appends, mailbox).has_message_id(folder, message_id)))


def _seen(message: Message) -> Seen:
    received = message.received_date
    return Seen(
        key=str(message.key),
        epoch=message.key.epoch,
        message_id=message.message_id or "",
        received=received.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if received else "",
        size=message.size or 0,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PostroomError):
        return f"{type(exc).__name__}: {exc.problem}"
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    place = f" ({where[0].filename.rpartition('/')[2]}:{where[0].lineno})" if where else ""
    return f"{type(exc).__name__}: {exc}{place}"
