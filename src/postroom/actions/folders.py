"""*Get folders*: the folders of a session."""

from __future__ import annotations

from functools import partial
from typing import cast

from postroom.actions._resolve import SessionRef, require, resolve
from postroom.errors import ConfigError
from postroom.filters import MessageFilter
from postroom.logs import get_logger
from postroom.message.keys import KeyRun
from postroom.session import Session
from postroom.transports.contract import CreatesFolders, Folder, Folders, Mailbox, ManagesFolders
from postroom.validation import check_one_line

__all__ = ["create_folder", "delete_folder", "folders", "rename_folder", "sent_folder"]


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
    _check_name("name", name)
    resolved = resolve(session)
    require(resolved, CreatesFolders, "creating folders")
    return resolved.call(lambda mailbox: cast(CreatesFolders, mailbox).create_folder(name.strip("/ ")), kind="folder")


def _existing(found: list[Folder], name: str, field: str) -> Folder:
    """The folder of ``found`` that ``name`` names (case-insensitive), or a ConfigError naming ``field`` and the
    folders there are."""
    _check_name(field, name)
    wanted = "/".join(level for level in name.split("/") if level.strip())
    for folder in found:
        if folder.name.casefold() == wanted.casefold():
            return folder
    shown = ", ".join(f.name for f in found[:30])
    raise ConfigError(field, f"there is no folder {name!r}", hint=f"nothing was changed; folders: {shown}")


def _check_name(field: str, name: object) -> None:
    if not isinstance(name, str) or not name.strip("/ ") or any(ch in name for ch in "*%"):
        raise ConfigError(field, f"{name!r} is not a folder name", hint="e.g. 'Processed' or 'Processed/2026'")
    check_one_line(field, name, hint="e.g. 'Processed' or 'Processed/2026'")


#: Folders a bot must not rename or delete: what the server and its clients rely on (RFC 6154 special use).
_PROTECTED_USES = {"\\SENT", "\\TRASH", "\\DRAFTS", "\\JUNK", "\\ARCHIVE", "\\ALL"}


def _refuse_protected(folder: Folder, verb: str) -> None:
    if folder.name.upper() == "INBOX" or {flag.upper() for flag in folder.flags} & _PROTECTED_USES:
        raise ConfigError(
            "folder",
            f"{folder.name!r} is the inbox or a special folder ({', '.join(folder.flags) or 'INBOX'}): "
            f"postroom does not {verb} it",
            hint="nothing was changed; its mail clients rely on it",
        )


def rename_folder(session: SessionRef, folder: str, new_name: str) -> Folder:
    """Rename ``folder`` to ``new_name`` (``/`` between levels: a new parent moves it there), with its
    subfolders and messages. The inbox and special folders (Sent, Trash, ...) are refused, and so is a
    name that is taken."""
    resolved = resolve(session)
    require(resolved, ManagesFolders, "renaming folders")
    taken = resolved.call(lambda mailbox: cast(Folders, mailbox).folders())
    source = _existing(taken, folder, "folder")
    _refuse_protected(source, "rename")
    _check_name("new_name", new_name)
    target = "/".join(level for level in new_name.split("/") if level.strip())
    if any(f.name.casefold() == target.casefold() for f in taken) and target.casefold() != source.name.casefold():
        raise ConfigError(
            "new_name", f"there is a folder {target!r} already", hint="nothing was changed; pick another name"
        )
    if target.casefold().startswith(source.name.casefold() + "/"):
        raise ConfigError("new_name", "is inside the folder being renamed", hint="nothing was changed")
    return resolved.call(
        lambda mailbox: cast(ManagesFolders, mailbox).rename_folder(source.name, target), kind="folder"
    )


def delete_folder(session: SessionRef, folder: str, *, force: bool = False, dry_run: bool = False) -> list[str]:
    """Delete ``folder`` for good, and return the folders deleted (its subfolders first, deepest first).

    A folder that holds messages or subfolders is refused unless ``force=True``: they go with it. The
    inbox and special folders (Sent, Trash, ...) are always refused. ``dry_run=True`` checks all that and
    returns what would be deleted, deleting nothing.
    """
    resolved = resolve(session)
    require(resolved, ManagesFolders, "deleting folders")
    found = _existing(resolved.call(lambda mailbox: cast(Folders, mailbox).folders()), folder, "folder")
    _refuse_protected(found, "delete")
    below = resolved.call(lambda mailbox: cast(Folders, mailbox).folders(f"{found.name}/*"))
    doomed = [*sorted(below, key=lambda f: f.name.count("/"), reverse=True), found]
    if not force:
        messages = 0
        for each in doomed:
            if not _selectable(each):
                continue  # a level that only holds others (IMAP \Noselect): no mail of its own
            runs = resolved.call(partial(_search, MessageFilter(folder=each.name)))
            messages += sum(len(run) for run in runs)
        if messages or below:
            raise ConfigError(
                "force",
                f"{found.name!r} holds {messages} message(s) and {len(below)} subfolder(s)",
                hint="nothing was deleted; pass force=True (--force) to delete them with it, or move them first",
            )
    names = [each.name for each in doomed]
    if dry_run:
        return names
    for each in doomed:
        if not _selectable(each):  # gone with its last child on some servers: delete it only if still there
            still = resolved.call(lambda mailbox, n=each.name: cast(Folders, mailbox).folders(n))  # type: ignore[misc]
            if not any(f.name.casefold() == each.name.casefold() for f in still):
                continue
        resolved.call(partial(_delete, each.name), kind="folder")
    return names


def _selectable(folder: Folder) -> bool:
    return not {flag.upper() for flag in folder.flags} & {"\\NOSELECT", "\\NONEXISTENT"}


def _search(chosen: MessageFilter, mailbox: Mailbox) -> list[KeyRun]:
    return mailbox.search(chosen)


def _delete(name: str, mailbox: Mailbox) -> None:
    cast(ManagesFolders, mailbox).delete_folder(name)


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
