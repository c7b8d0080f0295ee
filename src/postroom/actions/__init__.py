"""The email verbs, written only against the Mailbox contract."""

from postroom.actions.folders import create_folder, folders
from postroom.actions.loop import messages
from postroom.actions.manage import delete, mark_read, mark_unread, move, move_all
from postroom.actions.save import SavedFile, save_attachments, save_email
from postroom.actions.test_connection import ConnectionTest, test_connection

__all__ = [
    "ConnectionTest",
    "SavedFile",
    "create_folder",
    "delete",
    "folders",
    "mark_read",
    "mark_unread",
    "messages",
    "move",
    "move_all",
    "save_attachments",
    "save_email",
    "test_connection",
]
