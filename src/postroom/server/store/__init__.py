"""The server's database: its tables, their migrations, and opening it."""

from postroom.server.store.database import ServerDatabase

__all__ = ["ServerDatabase"]
