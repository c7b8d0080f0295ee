"""The processing ledger: what each bot has seen, claimed, done and failed, and each step's journal.

Every state change of an item is *fenced*: a claim bumps the item's fence, and each later write
checks it, so a worker whose claim expired (and was taken over) can no longer change anything.
Claims are taken with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a
time, and each write is one short ``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.sql.elements import ClauseElement

from postroom.database import insert_for, make_engine, migrate, reason, when_unlocked
from postroom.errors import PostroomError
from postroom.logs import get_logger
from postroom.paths import process_running
from postroom.runner.ledger.tables import effects, items, mailboxes, settings, workers

__all__ = [
    "Claim",
    "Effect",
    "Ledger",
    "LedgerError",
    "LostClaimError",
    "Seen",
    "default_ledger_url",
]

_log = get_logger("postroom.runner.ledger")


class LedgerError(PostroomError):
    """The ledger's database could not be reached or used."""

    exit_code = 11


class LostClaimError(PostroomError):
    """This worker's claim on a message expired and another worker took it over: stop touching it."""


@dataclass(frozen=True)
class Seen:
    """A message found in a folder: its key and the fingerprint that finds it again under a new UIDVALIDITY."""

    key: str
    epoch: str | None
    message_id: str
    received: str
    size: int


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one item, valid while ``fence`` is the item's fence."""

    item_id: int
    mailbox_id: int
    key: str
    fence: int
    attempts: int
    owner: str
    message_id: str = ""
    #: When the claim was taken (``time.time()``): its lease runs from here until it is renewed.
    taken_at: float = 0.0

    @property
    def first(self) -> bool:
        """The item's first claim ever: no step of it can have started before."""
        return self.fence == 1 and self.attempts == 0


@dataclass(frozen=True)
class Effect:
    """A step's journal entry: ``pending`` (recorded, nothing done), ``submitting`` (mail being handed to the
    server), ``done``; ``message_id`` for mail; ``detail`` what the step recorded (saved paths, the new key)."""

    seq: str
    kind: str
    state: str
    message_id: str | None
    detail: dict[str, Any]


def default_ledger_url() -> str:
    """SQLite in postroom's data folder (``POSTROOM_DATA``, else ``$POSTROOM_HOME/data``, else the OS's)."""
    from postroom.paths import data_dir

    return f"sqlite:///{data_dir() / 'ledger.sqlite3'}"


def _now() -> float:
    return time.time()


class Ledger:
    """One ledger database; thread-safe (a pool of connections). ``Ledger.open(url)`` creates or migrates it."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._fenced_statements: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}
        self._deployment_tag: str | None = None
        upsert = _insert(self, effects)
        self._upsert_effect = upsert.on_conflict_do_update(
            index_elements=[effects.c.item_id, effects.c.seq],
            set_={k: upsert.excluded[k] for k in ("kind", "state", "message_id", "detail", "updated_at")},
        )

    def __repr__(self) -> str:
        return f"<Ledger {self.engine.url.render_as_string(hide_password=True)}>"

    @classmethod
    def open(cls, url: str | None = None, *, migrate: bool = True, power_safe: bool = False) -> Ledger:
        """The ledger at ``url`` (a SQLAlchemy URL; None: SQLite in the data folder), schema brought up to date.
        ``power_safe``: each SQLite commit is flushed to disk (PostgreSQL's always are)."""
        url = url or default_ledger_url()
        engine = make_engine(url, setting="ledger", power_safe=power_safe)
        ledger = cls(engine, url)
        if migrate:
            ledger.migrate()
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    def migrate(self) -> None:
        """Create the tables or bring them to the newest revision (Alembic); safe with several processes."""
        try:
            migrate(self.engine, Path(__file__).parent / "migrations", lock_id=7071700001)
        except (OperationalError, DBAPIError) as exc:
            raise _unreachable(self, exc) from None

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """One short write transaction (SQLite: BEGIN IMMEDIATE, waiting for the one writer). A SQLite that
        answers "locked" at the start, before its busy wait applies, is asked again (nothing ran yet)."""
        connection = self._begin()
        try:
            yield connection
            connection.commit()
        except OperationalError as exc:
            connection.rollback()
            raise _unreachable(self, exc) from None
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def _begin(self) -> Connection:
        def begun() -> Connection:
            connection = self.engine.connect()
            try:
                connection.begin()
            except BaseException:
                connection.close()
                raise
            return connection

        try:
            return when_unlocked(self.engine, begun)
        except OperationalError as exc:
            raise _unreachable(self, exc) from None

    # -- mailboxes and their poll lease ---------------------------------------------------------------

    def mailbox_id(self, bot: str, identity: str, folder: str) -> int:
        """The row of (bot, mailbox, folder), made on first use."""
        where = and_(mailboxes.c.bot == bot, mailboxes.c.identity == identity, mailboxes.c.folder == folder)
        with self._tx() as db:
            found = db.execute(select(mailboxes.c.id).where(where)).scalar()
            if found is not None:
                return int(found)
            db.execute(
                _insert(self, mailboxes)
                .values(bot=bot, identity=identity, folder=folder, fence=0)
                .on_conflict_do_nothing()
            )
            return int(db.execute(select(mailboxes.c.id).where(where)).scalar_one())

    def take_lease(self, mailbox_id: int, owner: str, seconds: float) -> int | None:
        """Hold the poll of ``mailbox_id`` (one poller per mailbox at a time); the new fence, or None if another
        owner holds an unexpired lease. Renewing one's own lease keeps its fence."""
        now = _now()
        with self._tx() as db:
            row = db.execute(
                select(mailboxes.c.lease_owner, mailboxes.c.lease_until, mailboxes.c.fence)
                .where(mailboxes.c.id == mailbox_id)
                .with_for_update()
            ).one()
            mine = row.lease_owner == owner and (row.lease_until or 0) >= now
            if not mine and row.lease_owner is not None and (row.lease_until or 0) >= now:
                return None
            fence = int(row.fence) if mine else int(row.fence) + 1
            db.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mailbox_id)
                .values(lease_owner=owner, lease_until=now + seconds, fence=fence)
            )
            return fence

    def release_lease(self, mailbox_id: int, owner: str) -> None:
        with self._tx() as db:
            db.execute(
                update(mailboxes)
                .where(mailboxes.c.id == mailbox_id, mailboxes.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def heard_from_server(
        self, mailbox_id: int, *, trigger: str, error: str | None = None, state_token: str | None = None
    ) -> None:
        """The trigger's heartbeat: the server answered (``error`` None) or did not."""
        values: dict[str, Any] = {"trigger": trigger, "last_error": error}
        if error is None:
            values["last_checked_at"] = _now()
        if state_token is not None:
            values["state_token"] = state_token
        with self._tx() as db:
            db.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(**values))

    def mailbox_row(self, mailbox_id: int) -> dict[str, Any]:
        with self.engine.connect() as db:
            return dict(db.execute(select(mailboxes).where(mailboxes.c.id == mailbox_id)).one()._mapping)

    def save_position(self, mailbox_id: int, position: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(position=json.dumps(position)))

    # -- discovery ------------------------------------------------------------------------------------

    def known_keys(self, mailbox_id: int) -> set[str]:
        with self.engine.connect() as db:
            return set(db.execute(select(items.c.key).where(items.c.mailbox_id == mailbox_id)).scalars())

    def record_seen(self, mailbox_id: int, found: Sequence[Seen]) -> tuple[int, int]:
        """Record messages found in the folder: new ones as ``seen``. When their epoch (UIDVALIDITY) differs
        from the one the mailbox's items were keyed under, items of the old epoch are matched by Message-ID,
        date and size and re-keyed in place, keeping their state (done stays done). Returns (new, re-keyed)."""
        if not found:
            return 0, 0
        now = _now()
        remapped = 0
        with self._tx() as db:
            current = db.execute(select(mailboxes.c.epoch).where(mailboxes.c.id == mailbox_id)).scalar()
            epochs = {seen.epoch for seen in found}
            new_epoch = next(iter(epochs)) if len(epochs) == 1 else None
            rest = list(found)
            if current is not None and new_epoch is not None and new_epoch != current:
                rest, remapped = self._remap(db, mailbox_id, current, new_epoch, found)
            if new_epoch is not None and new_epoch != current:
                db.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(epoch=new_epoch))
            rows = [
                {
                    "mailbox_id": mailbox_id,
                    "key": seen.key,
                    "epoch": seen.epoch,
                    "message_id": seen.message_id[:1000],
                    "received": seen.received,
                    "size": seen.size,
                    "state": "seen",
                    "fence": 0,
                    "attempts": 0,
                    "seen_at": now,
                    "updated_at": now,
                }
                for seen in rest
            ]
            added = 0
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                result = db.execute(_insert(self, items).on_conflict_do_nothing(), chunk)
                added += max(0, result.rowcount) if result.rowcount is not None else len(chunk)
        if remapped:
            _log.warning(
                "mailbox %s: UIDVALIDITY changed from %s to %s; %d message(s) already known were matched again by "
                "Message-ID, date and size and keep their state",
                mailbox_id,
                current,
                new_epoch,
                remapped,
            )
            notice = (
                f"UIDVALIDITY changed from {current} to {new_epoch} at {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{remapped} known message(s) matched again by Message-ID, date and size"
            )
            with self._tx() as db:
                db.execute(update(mailboxes).where(mailboxes.c.id == mailbox_id).values(notice=notice))
        return added, remapped

    def _remap(
        self, db: Connection, mailbox_id: int, old: str, new: str, found: Sequence[Seen]
    ) -> tuple[list[Seen], int]:
        olds: dict[tuple[str, str, int], list[int]] = {}
        for row in db.execute(
            select(items.c.id, items.c.message_id, items.c.received, items.c.size).where(
                items.c.mailbox_id == mailbox_id, items.c.epoch == old
            )
        ):
            olds.setdefault((row.message_id or "", row.received or "", int(row.size or 0)), []).append(int(row.id))
        rest: list[Seen] = []
        remapped = 0
        now = _now()
        for seen in found:
            candidates = olds.get((seen.message_id, seen.received, seen.size))
            if not candidates:
                rest.append(seen)
                continue
            item_id = candidates.pop(0)
            db.execute(
                update(items)
                .where(items.c.id == item_id)
                .values(
                    key=seen.key,
                    epoch=new,
                    fence=items.c.fence + 1,  # a claim under the old key is void: the worker stops
                    state=case((items.c.state == "claimed", "seen"), else_=items.c.state),
                    claim_owner=None,
                    claim_until=None,
                    updated_at=now,
                )
            )
            remapped += 1
        return rest, remapped

    # -- claims ---------------------------------------------------------------------------------------

    def claim(self, mailbox_ids: Sequence[int], owner: str, *, limit: int, lease: float) -> list[Claim]:
        """Take up to ``limit`` items that are waiting (seen, a claim that expired, a failure due for retry)."""
        now = _now()
        chosen = (
            select(items.c.id)
            .where(items.c.mailbox_id.in_(list(mailbox_ids)), _waiting(now))
            .order_by(items.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return self._claim_where(items.c.id.in_(chosen.scalar_subquery()), owner, lease, now)

    def _claim_where(self, where: Any, owner: str, lease: float, now: float) -> list[Claim]:
        statement = (
            update(items)
            .where(where)
            .values(
                state="claimed",
                claim_owner=owner,
                claim_until=now + lease,
                fence=items.c.fence + 1,
                updated_at=now,
            )
            .returning(items.c.id, items.c.mailbox_id, items.c.key, items.c.fence, items.c.attempts, items.c.message_id)
        )
        with self._tx() as db:
            rows = db.execute(statement).all()
        return [
            Claim(int(r.id), int(r.mailbox_id), r.key, int(r.fence), int(r.attempts), owner, r.message_id or "", now)
            for r in rows
        ]

    def _fenced(self, db: Connection, claim: Claim, **values: Any) -> None:
        """Update the claimed item if the claim still holds; :class:`LostClaimError` otherwise. The statement
        for a set of columns is built once (building one costs more than running it)."""
        plain = {name: value for name, value in values.items() if not isinstance(value, ClauseElement)}
        expressions = {name: value for name, value in values.items() if isinstance(value, ClauseElement)}
        names = (tuple(sorted(plain)), tuple(sorted(expressions)))  # an expression (attempts + 1) is built in
        statement = self._fenced_statements.get(names)
        if statement is None:
            statement = self._fenced_statements[names] = (
                update(items)
                .where(
                    items.c.id == bindparam("fenced_id"),
                    items.c.fence == bindparam("fenced_fence"),
                    items.c.state == "claimed",
                )
                .values(
                    updated_at=bindparam("fenced_at"),
                    **{name: bindparam(f"v_{name}") for name in plain},
                    **expressions,
                )
            )
        parameters = {f"v_{name}": value for name, value in plain.items()}
        parameters.update(fenced_id=claim.item_id, fenced_fence=claim.fence, fenced_at=_now())
        result = db.execute(statement, parameters)
        if result.rowcount != 1:
            raise LostClaimError(
                f"the claim on {claim.key} was taken over by another worker (it expired); this worker stops there",
                hint="raise claim_lease if steps take longer than it",
            )

    def renew(self, claim: Claim, lease: float) -> None:
        with self._tx() as db:
            self._fenced(db, claim, claim_until=_now() + lease)

    # -- the journal and outbox -----------------------------------------------------------------------

    def effects_of(self, item_id: int) -> dict[str, Effect]:
        with self.engine.connect() as db:
            rows = db.execute(select(effects).where(effects.c.item_id == item_id)).all()
        return {
            r.seq: Effect(r.seq, r.kind, r.state, r.message_id, json.loads(r.detail) if r.detail else {}) for r in rows
        }

    def record_effect(
        self,
        claim: Claim,
        seq: str,
        kind: str,
        state: str,
        *,
        message_id: str | None = None,
        detail: dict[str, Any] | None = None,
        lease: float | None = None,
        finish: bool = False,
        new_key: str | None = None,
    ) -> None:
        """Write a step's journal entry, fenced by the claim (which it renews when ``lease`` is given); with
        ``finish``, the item is done in the same transaction (its last step)."""
        now = _now()
        row = {
            "item_id": claim.item_id,
            "seq": seq,
            "kind": kind,
            "state": state,
            "message_id": message_id,
            "detail": json.dumps(detail or {}, default=str),
            "updated_at": now,
        }
        if finish:
            change: dict[str, Any] = {"state": "done", "done_at": now, "error": None, "new_key": new_key}
            change["claim_until"] = None
        else:
            change = {"claim_until": now + lease} if lease else {}
        with self._tx() as db:
            self._fenced(db, claim, **change)
            db.execute(self._upsert_effect, row)

    # -- outcomes -------------------------------------------------------------------------------------

    def finish(self, claim: Claim, *, new_key: str | None = None) -> None:
        with self._tx() as db:
            self._fenced(db, claim, state="done", done_at=_now(), error=None, new_key=new_key, claim_until=None)

    def fail(self, claim: Claim, error: str, *, retry_at: float | None, new_key: str | None = None) -> None:
        """Record a failed attempt: tried again from ``retry_at``, or (None) left for a person (``bot retry``)."""
        with self._tx() as db:
            self._fenced(
                db,
                claim,
                state="failed",
                error=error[:4000],
                attempts=items.c.attempts + 1,
                next_try_at=retry_at,
                claim_until=None,
                new_key=new_key,
            )

    def skip(self, claim: Claim, reason: str) -> None:
        """Leave an item to another deployment, which claimed it on the mail server."""
        with self._tx() as db:
            self._fenced(db, claim, state="skipped", error=reason[:4000], claim_until=None)

    def release(self, claim: Claim) -> None:
        """Give an item back untouched (a worker stopping): waiting again at once."""
        with self._tx() as db:
            db.execute(
                update(items)
                .where(items.c.id == claim.item_id, items.c.fence == claim.fence, items.c.state == "claimed")
                .values(state="seen", claim_owner=None, claim_until=None)
            )

    def reclaim_from_dead(self, bot: str) -> int:
        """Give back the claims and leases of this host's processes that are gone (a runner killed mid-run): a
        re-run on the same host need not wait for their leases to expire. Other hosts' claims expire as usual."""
        host = socket.gethostname()
        now = _now()
        with self._tx() as db:
            rows = db.execute(
                select(items.c.id, items.c.claim_owner)
                .select_from(items.join(mailboxes))
                .where(mailboxes.c.bot == bot, items.c.state == "claimed", items.c.claim_owner.like(f"{host}:%"))
            ).all()
            dead = [int(r.id) for r in rows if not _alive(r.claim_owner)]
            if dead:
                db.execute(
                    update(items)
                    .where(items.c.id.in_(dead), items.c.state == "claimed")
                    .values(state="seen", claim_owner=None, claim_until=None, fence=items.c.fence + 1, updated_at=now)
                )
            leases = db.execute(
                select(mailboxes.c.id, mailboxes.c.lease_owner).where(
                    mailboxes.c.bot == bot, mailboxes.c.lease_owner.like(f"{host}:%")
                )
            ).all()
            for lease in leases:
                if not _alive(lease.lease_owner):
                    db.execute(
                        update(mailboxes).where(mailboxes.c.id == lease.id).values(lease_owner=None, lease_until=None)
                    )
        if dead:
            _log.warning("%d message(s) claimed by a runner that died on this host are waiting again", len(dead))
        return len(dead)

    # -- the ledger's own settings ----------------------------------------------------------------------

    def deployment_tag(self) -> str:
        """A random tag made once per ledger: what tells this deployment's claims on the mail server from
        another's (every runner and worker on this ledger is one deployment)."""
        if self._deployment_tag is None:
            with self._tx() as db:
                made = secrets.token_hex(4)
                db.execute(_insert(self, settings).values(name="deployment_tag", value=made).on_conflict_do_nothing())
                self._deployment_tag = db.execute(
                    select(settings.c.value).where(settings.c.name == "deployment_tag")
                ).scalar_one()
        return self._deployment_tag

    # -- workers --------------------------------------------------------------------------------------

    def register_worker(self, bot: str, kind: str) -> str:
        owner = f"{socket.gethostname()}:{os.getpid()}:{kind}:{threading.get_ident() % 100000}"
        now = _now()
        with self._tx() as db:
            statement = _insert(self, workers).values(
                id=owner, bot=bot, host=socket.gethostname(), pid=os.getpid(), kind=kind, started_at=now, seen_at=now
            )
            db.execute(
                statement.on_conflict_do_update(index_elements=[workers.c.id], set_={"seen_at": now, "started_at": now})
            )
        return owner

    def worker_alive(self, owner: str) -> None:
        with self._tx() as db:
            db.execute(update(workers).where(workers.c.id == owner).values(seen_at=_now()))

    # -- status, retry, forget ------------------------------------------------------------------------

    def counts(self, bot: str) -> dict[str, int]:
        with self.engine.connect() as db:
            rows = db.execute(
                select(items.c.state, func.count())
                .select_from(items.join(mailboxes))
                .where(mailboxes.c.bot == bot)
                .group_by(items.c.state)
            ).all()
        found = {state: 0 for state in ("seen", "claimed", "done", "failed")}  # skipped: listed when there are any
        found.update({r[0]: int(r[1]) for r in rows})
        return found

    def activity_since(self, bot: str, since: float) -> dict[str, int]:
        """Messages found, done and failed since ``since`` (a run's report when others did the work)."""
        joined = items.join(mailboxes)
        with self.engine.connect() as db:
            found = {
                "new": db.execute(
                    select(func.count()).select_from(joined).where(mailboxes.c.bot == bot, items.c.seen_at >= since)
                ).scalar_one(),
                "done": db.execute(
                    select(func.count()).select_from(joined).where(mailboxes.c.bot == bot, items.c.done_at >= since)
                ).scalar_one(),
                "failed": db.execute(
                    select(func.count())
                    .select_from(joined)
                    .where(mailboxes.c.bot == bot, items.c.state == "failed", items.c.updated_at >= since)
                ).scalar_one(),
            }
        return {name: int(value) for name, value in found.items()}

    def status(self, bot: str, *, limit: int = 50) -> dict[str, Any]:
        """What ``postroom bot status`` shows: counts, claims and their owners, failures, trigger health."""
        now = _now()
        with self.engine.connect() as db:
            boxes = [dict(r._mapping) for r in db.execute(select(mailboxes).where(mailboxes.c.bot == bot))]
            claimed = db.execute(
                select(items.c.key, items.c.claim_owner, items.c.claim_until)
                .select_from(items.join(mailboxes))
                .where(mailboxes.c.bot == bot, items.c.state == "claimed")
                .limit(limit)
            ).all()
            failed = db.execute(
                select(items.c.key, items.c.attempts, items.c.error, items.c.next_try_at)
                .select_from(items.join(mailboxes))
                .where(mailboxes.c.bot == bot, items.c.state == "failed")
                .order_by(items.c.id)
                .limit(limit)
            ).all()
            runners = db.execute(select(workers).where(workers.c.bot == bot).order_by(workers.c.seen_at.desc())).all()
        return {
            "bot": bot,
            "counts": self.counts(bot),
            "mailboxes": [
                {
                    "mailbox": b["identity"],
                    "folder": b["folder"],
                    "uidvalidity": b["epoch"],
                    "trigger": b["trigger"],
                    "last_checked_at": b["last_checked_at"],
                    "seconds_since_checked": round(now - b["last_checked_at"], 1) if b["last_checked_at"] else None,
                    "last_error": b["last_error"],
                    "notice": b["notice"],
                    "poll_lease": b["lease_owner"] if (b["lease_until"] or 0) >= now else None,
                }
                for b in boxes
            ],
            "claimed": [
                {"key": r.key, "by": r.claim_owner, "expires_in": round((r.claim_until or now) - now, 1)}
                for r in claimed
            ],
            "failed": [
                {
                    "key": r.key,
                    "attempts": r.attempts,
                    "error": r.error,
                    "next_try_in": round(r.next_try_at - now, 1) if r.next_try_at else None,
                }
                for r in failed
            ],
            "workers": [
                {"id": r.id, "kind": r.kind, "seconds_since_seen": round(now - (r.seen_at or now), 1)} for r in runners
            ],
        }

    def _select_items(self, bot: str, keys: Iterable[str] | None, states: Sequence[str]) -> Any:
        chosen = select(items.c.id).select_from(items.join(mailboxes)).where(mailboxes.c.bot == bot)
        key_list = list(keys) if keys is not None else None
        if key_list:
            chosen = chosen.where(items.c.key.in_(key_list))
        if states:
            chosen = chosen.where(items.c.state.in_(list(states)))
        return chosen

    def retry(self, bot: str, keys: Iterable[str] | None = None, *, resend: bool = False) -> int:
        """Send failed items through again (all of the bot's, or those with ``keys``); their journal stays, so
        steps already done are not done again. ``resend`` also lets mail whose delivery was unknown go again."""
        with self._tx() as db:
            ids = [int(i) for i in db.execute(self._select_items(bot, keys, ["failed"])).scalars()]
            if not ids:
                return 0
            if resend:
                db.execute(
                    update(effects)
                    .where(effects.c.item_id.in_(ids), effects.c.state == "unknown")
                    .values(state="pending")
                )
            db.execute(
                update(items)
                .where(items.c.id.in_(ids))
                .values(state="seen", attempts=0, next_try_at=None, error=None, updated_at=_now())
            )
        return len(ids)

    def forget(
        self, bot: str, keys: Iterable[str] | None = None, *, states: Sequence[str] = (), dry_run: bool
    ) -> list[str]:
        """Remove ledger entries (with their journals): the messages count as new at the next poll."""
        with self._tx() as db:
            chosen = self._select_items(bot, keys, states)
            rows = db.execute(select(items.c.id, items.c.key).where(items.c.id.in_(chosen.scalar_subquery()))).all()
            if not dry_run and rows:
                ids = [int(r.id) for r in rows]
                db.execute(delete(effects).where(effects.c.item_id.in_(ids)))
                db.execute(delete(items).where(items.c.id.in_(ids)))
        return [r.key for r in rows]

    def item(self, item_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(items).where(items.c.id == item_id)).first()
        return dict(row._mapping) if row is not None else None

    def waiting(self, mailbox_ids: Sequence[int]) -> list[int]:
        """Ids of items waiting to be processed now (for a scheduler that hands them out)."""
        now = _now()
        with self.engine.connect() as db:
            return [
                int(i)
                for i in db.execute(
                    select(items.c.id)
                    .where(
                        items.c.mailbox_id.in_(list(mailbox_ids)),
                        or_(
                            items.c.state == "seen",
                            and_(items.c.state == "claimed", items.c.claim_until < now),
                            and_(
                                items.c.state == "failed", items.c.next_try_at.is_not(None), items.c.next_try_at <= now
                            ),
                        ),
                    )
                    .order_by(items.c.id)
                ).scalars()
            ]

    def next_retry_in(self, mailbox_ids: Sequence[int]) -> float | None:
        """Seconds until the next failed item is due for another try (None: none will be)."""
        with self.engine.connect() as db:
            due = db.execute(
                select(func.min(items.c.next_try_at)).where(
                    items.c.mailbox_id.in_(list(mailbox_ids)),
                    items.c.state == "failed",
                    items.c.next_try_at.is_not(None),
                )
            ).scalar()
        return None if due is None else max(0.0, float(due) - _now())

    def unfinished(self, mailbox_ids: Sequence[int]) -> int:
        """Items not yet done nor failed for good: what a run without --watch waits for."""
        with self.engine.connect() as db:
            return int(
                db.execute(
                    select(func.count())
                    .select_from(items)
                    .where(
                        items.c.mailbox_id.in_(list(mailbox_ids)),
                        or_(
                            items.c.state.in_(["seen", "claimed"]),
                            and_(items.c.state == "failed", items.c.next_try_at.is_not(None)),
                        ),
                    )
                ).scalar_one()
            )


def _waiting(now: float) -> Any:
    """Items a worker may take now: seen, claimed by a claim that expired, failed and due for another try."""
    return or_(
        items.c.state == "seen",
        and_(items.c.state == "claimed", items.c.claim_until < now),
        and_(items.c.state == "failed", items.c.next_try_at.is_not(None), items.c.next_try_at <= now),
    )


def _alive(owner: str) -> bool:
    """Whether the process named in an owner (``host:pid:...``) on this host still runs."""
    parts = owner.split(":")
    return len(parts) < 2 or not parts[1].isdigit() or process_running(int(parts[1]))


def _insert(ledger: Ledger, table: Any) -> Any:
    return insert_for(ledger.engine, table)


def _unreachable(ledger: Ledger, exc: Exception) -> LedgerError:
    detail = reason(exc)
    where = ledger.engine.url.render_as_string(hide_password=True)
    return LedgerError(
        f"the ledger {where} cannot be used: {detail}", hint="check the ledger URL and that the database is up"
    )
