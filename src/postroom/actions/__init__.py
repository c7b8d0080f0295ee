"""The email verbs, written only against the Mailbox contract."""

from postroom.actions.test_connection import ConnectionTest, test_connection

__all__ = ["ConnectionTest", "test_connection"]
