"""The email verbs, written only against the Mailbox contract."""

from postroom.actions.folders import create_folder, delete_folder, folders, rename_folder
from postroom.actions.loop import messages
from postroom.actions.manage import (
    add_flags,
    delete,
    flag,
    mark_read,
    mark_unread,
    move,
    move_all,
    remove_flags,
    unflag,
)
from postroom.actions.save import SavedFile, save_attachments, save_email
from postroom.actions.test_connection import ConnectionTest, test_connection

__all__ = [
    "ConnectionTest",
    "SavedFile",
    "add_flags",
    "create_folder",
    "delete",
    "delete_folder",
    "flag",
    "folders",
    "mark_read",
    "mark_unread",
    "messages",
    "move",
    "move_all",
    "remove_flags",
    "rename_folder",
    "save_attachments",
    "save_email",
    "test_connection",
    "unflag",
]
