"""*Save attachments* and *Save email*: the actions; the work is done in :mod:`postroom.message.saving`,
where a message saves itself (``mail.save_attachments(...)``)."""

from postroom.message.saving import SavedFile, attachment_file_name, name_matches, save_attachments, save_email

__all__ = ["SavedFile", "attachment_file_name", "name_matches", "save_attachments", "save_email"]
