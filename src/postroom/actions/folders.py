"""*Get folders*: the folders of a session."""

from __future__ import annotations

from typing import cast

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.errors import ConfigError
from postroom.logs import get_logger
from postroom.session import Session
from postroom.transports.contract import CreatesFolders, Folder, Folders
from postroom.validation import check_one_line

__all__ = ["create_folder", "folders", "sent_folder"]


def folders(session: SessionRef, pattern: str = "*") -> list[Folder]:
    """Folders matching ``pattern`` (``*`` any depth, ``%`` one level); a server without folders (POP3) has
    only ``INBOX``."""
    check_one_line("pattern", pattern, hint="e.g. '*' or 'INBOX/*'")
    resolved = resolve(session)
    if not resolved.can(Folders):
        return [Folder("INBOX", None)]
    return resolved.call(lambda mailbox: cast(Folders, mailbox).folders(pattern))


def create_folder(session: SessionRef, name: str) -> Folder:
    """Create folder ``name`` (``/`` between levels, e.g. ``"Processed/2026"``; the levels above come too).

    A folder that exists already is returned as it is, so a bot may call this on every run.
    """
    if not isinstance(name, str) or not name.strip("/ ") or any(ch in name for ch in "*%"):
        raise ConfigError("name", f"{name!r} is not a folder name", hint="e.g. 'Processed' or 'Processed/2026'")
    check_one_line("name", name, hint="e.g. 'Processed' or 'Processed/2026'")
    resolved = resolve(session)
    require(resolved, CreatesFolders, "creating folders")
    return resolved.call(lambda mailbox: cast(CreatesFolders, mailbox).create_folder(name.strip("/ ")), kind="folder")


_log = get_logger("postroom.folders")
#: What clients call the Sent folder when the server flags none as \Sent (RFC 6154), at any level.
SENT_NAMES = ("sent", "sent items", "sent messages", "sent mail", "gesendet", "gesendete elemente", "envoyés")


def sent_folder(session: Session, wanted: str | bool) -> str:
    r"""The folder a sent message's copy goes to, found (or made) *before* the message is sent.

    ``True``: the folder the server flags ``\Sent``, else one with a usual Sent name at any level
    (``INBOX/Sent`` on a server with ``.`` between levels), else a new ``Sent``. A name: that
    folder, which must exist (a typo must not become a new folder).
    """
    if isinstance(wanted, str):
        check_one_line("save_to_sent", wanted, hint="nothing was sent; give the folder's name")
    if not session.can(Folders):
        return wanted if isinstance(wanted, str) else "Sent"
    found = session.call(lambda mailbox: cast(Folders, mailbox).folders())
    if isinstance(wanted, str):
        path = "/".join(level for level in wanted.split("/") if level.strip()).casefold()
        for folder in found:
            if folder.name.casefold() == path:
                return folder.name
        shown = ", ".join(f.name for f in found[:20])
        raise ConfigError("save_to_sent", f"there is no folder {wanted!r}", hint=f"nothing was sent; folders: {shown}")
    for folder in found:
        if "\\SENT" in folder.flags:
            return folder.name
    named = [
        f.name for f in found if f.name.rpartition("/")[2].casefold() in SENT_NAMES and "\\NOSELECT" not in f.flags
    ]
    if named:
        return min(named, key=lambda name: (name.count("/"), SENT_NAMES.index(name.rpartition("/")[2].casefold())))
    if not session.can(CreatesFolders):
        raise ConfigError("save_to_sent", "the server has no Sent folder", hint="nothing was sent; name a folder")
    _log.info("session %r has no Sent folder; creating 'Sent' for the copies", session.name)
    return session.call(lambda mailbox: cast(CreatesFolders, mailbox).create_folder("Sent"), kind="folder").name


def _last_level(name: str) -> str:
    return name.rpartition("/")[2].casefold()
