"""The runner API's audit writer: entries of simultaneous answers share a commit, none is lost, and an entry
that cannot be stored is an error for its caller (who then hands nothing out)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from postroom.server.audit import Actor, AuditNotStoredError, GroupWriter, entry
from postroom.server.store.database import ServerDatabase
from postroom.server.store.tables import audit


def test_entries_written_at_once_are_all_stored_once(tmp_path: Path) -> None:
    database = ServerDatabase(f"sqlite:///{tmp_path / 'server.sqlite3'}")
    database.migrate()
    seen: list[list[int]] = []
    writer = GroupWriter(database, extra=lambda _db, items: seen.append(list(items)))
    start = threading.Barrier(30)

    def answer(index: int) -> None:
        start.wait()
        writer.write(entry(Actor("runner", "r1"), "token.issue", run_id=f"run-{index}"), index)

    threads = [threading.Thread(target=answer, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with database.read() as db:
        runs = sorted(db.execute(select(audit.c.run_id).where(audit.c.action == "token.issue")).scalars())
    assert runs == sorted(f"run-{i}" for i in range(30))
    assert sorted(item for group in seen for item in group) == list(range(30))  # each runner's last use, once
    assert len(seen) < 30  # some answers shared a commit
    database.close()


def test_an_entry_that_cannot_be_stored_is_an_error_for_its_caller(tmp_path: Path) -> None:
    database = ServerDatabase(f"sqlite:///{tmp_path / 'unmigrated.sqlite3'}")  # no audit table
    writer = GroupWriter(database)
    with pytest.raises(AuditNotStoredError, match="could not be stored"):
        writer.write(entry(Actor("runner", "r1"), "token.issue", run_id="run-1"))
    database.close()
