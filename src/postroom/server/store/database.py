"""Opening the server's database: the engine, its migrations, short transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from postroom.database import READ_ONLY, insert_for, make_engine, migrate, reason
from postroom.errors import PostroomError

__all__ = ["DatabaseError", "ServerDatabase"]


class DatabaseError(PostroomError):
    """The server's database cannot be used."""

    exit_code = 11


class ServerDatabase:
    """The server's database; thread-safe (a pool). Every process of one server shares it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: Engine = make_engine(url, setting="database_url")
        self.is_sqlite = self.engine.dialect.name == "sqlite"

    def __repr__(self) -> str:
        return f"<ServerDatabase {self.engine.url.render_as_string(hide_password=True)}>"

    def migrate(self) -> None:
        try:
            migrate(self.engine, Path(__file__).parent / "migrations", lock_id=7071700002)
        except (OperationalError, DBAPIError) as exc:
            raise self._unusable(exc) from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """One short transaction, committed at the end (rolled back on any error)."""
        try:
            with self.engine.begin() as connection:
                yield connection
        except OperationalError as exc:
            raise self._unusable(exc) from None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One transaction that only reads: on SQLite it begins deferred and so waits for no writer (do not
        write in it: it would meet the writer without the wait ``BEGIN IMMEDIATE`` gives)."""
        try:
            with self.engine.connect() as connection:
                connection.execution_options(**{READ_ONLY: True})
                with connection.begin():
                    yield connection
        except OperationalError as exc:
            raise self._unusable(exc) from None

    def insert(self, table: Any) -> Any:
        return insert_for(self.engine, table)

    def _unusable(self, exc: Exception) -> DatabaseError:
        where = self.engine.url.render_as_string(hide_password=True)
        return DatabaseError(
            f"the server database {where} cannot be used: {reason(exc)}",
            hint="check database_url and that the database is up",
        )
