"""Alembic's environment for the ledger: run on the connection :func:`postroom.runner.ledger.store.migrate` gives."""

from __future__ import annotations

from alembic import context

from postroom.runner.ledger.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table="postroom_alembic_version")
with context.begin_transaction():
    context.run_migrations()
