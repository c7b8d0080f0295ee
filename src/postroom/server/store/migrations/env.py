"""Alembic's environment for the server's database: run on the connection ``ServerDatabase.migrate`` gives."""

from __future__ import annotations

from alembic import context

from postroom.server.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table="postroom_server_alembic_version")
with context.begin_transaction():
    context.run_migrations()
