"""One way to open a SQL database and bring its schema up to date, for the ledger and the server.

SQLite (the embedded default) gets WAL, a busy wait and ``BEGIN IMMEDIATE`` — one writer, short
transactions — except on a connection marked :data:`READ_ONLY`, whose transactions begin deferred and
so read beside the writer; PostgreSQL (``postgresql://…`` through psycopg) a pre-pinged pool. Schemas are
migrated with Alembic, each owner with its own version table, and on PostgreSQL under an advisory
lock so that several processes starting at once migrate once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from postroom.errors import ConfigError

__all__ = ["READ_ONLY", "insert_for", "make_engine", "migrate", "reason", "when_unlocked"]

T = TypeVar("T")

#: The execution option of a connection that only reads: on SQLite its transactions take no write lock.
READ_ONLY = "postroom_read_only"
#: Connections a process keeps open, and how many more it opens at a peak (closed again after use). Sized
#: for a web server's thread pool (40): with 5, most requests of a burst opened a connection of their own
#: (on SQLite its pragmas, on PostgreSQL a login) and closed it again.
POOL_SIZE, POOL_OVERFLOW = 20, 20


def make_engine(url: str, *, setting: str, power_safe: bool = False) -> Engine:
    """An engine for ``url``; ``setting`` names the option a bad URL came from (for the error).
    ``power_safe``: each SQLite commit is flushed to disk (PostgreSQL's always are)."""
    if url.startswith("sqlite"):
        path = url.partition(":///")[2]
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 60, "check_same_thread": False},
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
        )
        event.listen(engine, "connect", lambda connection, _record: _sqlite_setup(connection, power_safe))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            setting,
            f"the driver for {url.split(':')[0]} is not installed ({exc.name})",
            hint="pip install 'postroom[postgres]'",
        ) from None
    except Exception as exc:  # an unparseable URL
        raise ConfigError(
            setting, f"{type(exc).__name__}: cannot use this URL", hint="e.g. postgresql://user@host/db"
        ) from None


def migrate(engine: Engine, script_location: Path, *, lock_id: int) -> None:
    """Bring the schema whose Alembic scripts are in ``script_location`` to its newest revision. On PostgreSQL
    one migrator runs at a time (advisory lock ``lock_id``); the others wait, then find nothing to do."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location))

    def upgrade() -> None:
        with engine.begin() as connection:
            if engine.dialect.name != "sqlite":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    when_unlocked(engine, upgrade)  # (one transaction: a try that was refused left nothing behind)


def when_unlocked(engine: Engine, action: Callable[[], T]) -> T:
    """Run ``action``; where SQLite answers "database is locked" before its busy wait applies (two processes
    opening a new file at once, each switching it to WAL), ask again after a growing pause, 100 times at most.
    ``action`` must leave nothing behind when it fails."""
    for attempt in range(100):
        try:
            return action()
        except OperationalError as exc:
            if engine.dialect.name != "sqlite" or "locked" not in str(exc.orig) or attempt == 99:
                raise
            time.sleep(min(0.5, 0.01 * (attempt + 1)))
    raise AssertionError("unreachable")


def insert_for(engine: Engine, table: Any) -> Any:
    """An INSERT with ``on_conflict_do_…`` for this engine's dialect."""
    return (sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert)(table)


def reason(exc: Exception) -> str:
    """The first line of what the database driver said (for an error message)."""
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0][:300]


def _sqlite_begin(connection: Any) -> None:
    """Writers queue for the write lock at BEGIN (no deadlock on upgrade); readers read the last commit."""
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_setup(connection: Any, power_safe: bool) -> None:
    connection.isolation_level = None  # the driver leaves BEGIN to us (BEGIN IMMEDIATE above)
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: a commit survives the process's crash; FULL: also a power cut (a flush per commit)
    cursor.execute("PRAGMA synchronous=FULL" if power_safe else "PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
