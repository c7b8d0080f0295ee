"""Everything a request handler needs, built once per process: settings, database, sealer, tokens, and
the runner API's audit writer."""

from __future__ import annotations

import time
from dataclasses import dataclass

from postroom.auth.oauth.clients import OAuthClient
from postroom.server.accounts import ensure_builtin_roles
from postroom.server.audit import GroupWriter
from postroom.server.connections import StoredConnection
from postroom.server.runners import mark_used
from postroom.server.sealing import Sealer
from postroom.server.settings import ServerSettings
from postroom.server.store.database import ServerDatabase
from postroom.server.tokens import Tokens

__all__ = ["Services"]


@dataclass
class Services:
    settings: ServerSettings
    database: ServerDatabase
    sealer: Sealer
    tokens: Tokens
    started_at: float
    #: The token endpoint's audit entries and runners' last use, group-committed (see GroupWriter).
    runner_audit: GroupWriter

    @classmethod
    def start(cls, settings: ServerSettings, *, migrate: bool = True) -> Services:
        """Open (and by default migrate) the database and load the key, making both on first start."""
        sealer = Sealer.from_file(settings.key_file)
        database = ServerDatabase(settings.database_url)
        if migrate:
            database.migrate()
            with database.tx() as db:
                ensure_builtin_roles(db)
        writer = GroupWriter(database, extra=mark_used)
        services = cls(settings, database, sealer, None, time.time(), writer)  # type: ignore[arg-type]
        services.tokens = Tokens(database, sealer, services.client_for)
        return services

    def client_for(self, connection: StoredConnection) -> OAuthClient:
        return connection.client(
            ca_file=self.settings.ca_file,
            relogin=f"sign in again at {self.settings.url('/connections/' + connection.name)}",
        )

    def close(self) -> None:
        self.database.close()
