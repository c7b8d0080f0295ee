"""IMAP writing: flags, moves, deletes and appends by ``(folder, UIDVALIDITY, UID)``; never a bare EXPUNGE
unless the caller accepted it (``allow_expunge_all``), and then with other messages' ``\\Deleted`` lifted."""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import re
from collections.abc import Callable, Iterator
from typing import Literal

from postroom.errors import ConfigError, ConnectionLostError, PostroomError, ProtocolError, UnsupportedError
from postroom.transports.call_options import call_option
from postroom.transports.contract import Folder, ItemResult, check_flag_names
from postroom.transports.errors import server_text
from postroom.transports.imap.connection import (
    _WRITE_CHUNK,
    ImapConnection,
    PendingChange,
    _gone,
    _log,
)
from postroom.transports.imap.folders import normal_inbox, user_path
from postroom.transports.imap.keys import ImapKey
from postroom.transports.imap.response import items_of
from postroom.transports.imap.syntax import chunked, copyuid, mailbox_arg, quote, uid_set

__all__ = ["ImapWriting"]

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$")


class ImapWriting(ImapConnection):
    """Changing a mailbox."""

    def _existing(self, keys: list[ImapKey]) -> set[int]:
        uids: set[int] = set()
        for chunk in chunked([key.uid for key in keys], _WRITE_CHUNK):
            typ, data = self._uid("SEARCH", "UID", uid_set(chunk))
            if typ != "OK":
                raise ProtocolError(f"SEARCH failed: {server_text(data)}")
            uids.update(int(t) for line in data if isinstance(line, bytes) for t in line.split())
        return uids

    def _by_folder(
        self,
        keys: list[ImapKey],
        action: Callable[[list[ImapKey]], dict[ImapKey, ItemResult]],
        *,
        settles: Literal["move", "delete"] | None = None,
        target: str = "",
    ) -> list[ItemResult]:
        """Run ``action`` per folder; return one result per key, in input order.

        A key gone from its folder is *already done* when this very change was sent for it
        before a dropped connection (``settles``): a deleted message, or a moved one found
        in ``target`` by its Message-ID (with its new key). Otherwise it failed: not found.
        """
        self._forget_ahead()
        results: dict[ImapKey, ItemResult] = {}
        unsettled: list[ImapKey] = []
        for folder in dict.fromkeys(key.folder for key in keys):
            group = [key for key in keys if key.folder == folder]
            self._select_for(group, writable=True)
            existing = self._existing(group)
            present = [key for key in group if key.uid in existing]
            unsettled += [key for key in group if key.uid not in existing]
            if present:
                results.update(action(present))
        for key in unsettled:
            results[key] = self._settle(key, settles, target)
        return [results[key] for key in keys]

    def _settle(self, key: ImapKey, kind: Literal["move", "delete"] | None, target: str) -> ItemResult:
        """What became of ``key``, gone from its folder: done by our own change before the connection dropped?"""
        pending = self.pending.pop(key, None)
        if pending is not None and kind == pending.kind == "delete":
            return ItemResult(key, "already_done", "deleted before the connection dropped")
        if pending is not None and kind == pending.kind == "move" and pending.folder == target:
            found = self._locate(target, pending.message_id) if pending.message_id else None
            if found is not None:
                return ItemResult(key, "already_done", f"moved to {target} before the connection dropped", found)
            return ItemResult(
                key,
                "failed",
                f"gone from {key.folder} after a dropped connection, and not found in {target}",
                error=ProtocolError(
                    f"message {key} left {key.folder!r} while a move to {target!r} was under way, "
                    f"but {target!r} has no message with its Message-ID",
                    hint="another client may have moved or deleted it; look for it before acting again",
                ),
            )
        return ItemResult(key, "failed", "not found: already moved or deleted", error=_gone(key))

    def _locate(self, folder: str, message_id: str) -> ImapKey | None:
        """The newest message of ``folder`` with this Message-ID."""
        validity = self._select(folder, writable=False)
        typ, data = self._uid("SEARCH", "HEADER", "Message-ID", quote(message_id))
        found = [int(t) for line in data if isinstance(line, bytes) for t in line.split()] if typ == "OK" else []
        return ImapKey(normal_inbox(folder), validity, max(found)) if found else None

    def _message_ids(self, uids: list[int]) -> dict[int, str]:
        """UID → Message-ID of messages of the selected folder (one FETCH per chunk)."""
        found: dict[int, str] = {}
        for responses in self._fetch_many(uids, "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", items_of):
            for items in responses:
                uid = items.get("UID")
                header = next((v for n, v in items.items() if n.startswith("BODY[")), None)
                match = _MESSAGE_ID.search(header) if isinstance(header, bytes) else None
                if isinstance(uid, bytes) and uid.isdigit() and match:
                    found[int(uid)] = match.group(1).decode("ascii", "replace")
        return found

    @contextlib.contextmanager
    def _pending_while(self, changes: dict[ImapKey, PendingChange]) -> Iterator[None]:
        """Record ``changes`` as sent while the block runs; they stay recorded only if the connection drops."""
        self.pending.update(changes)
        try:
            yield
        except ConnectionLostError:
            raise  # the server may have done them: a retry settles them
        except BaseException:
            self._forget_pending(changes)
            raise
        self._forget_pending(changes)

    def _forget_pending(self, changes: dict[ImapKey, PendingChange]) -> None:
        for key in changes:
            self.pending.pop(key, None)

    def _store(self, keys: list[ImapKey], change: str) -> None:
        for chunk in chunked([key.uid for key in keys], _WRITE_CHUNK):
            typ, data = self._uid("STORE", uid_set(chunk), change)
            if typ != "OK":
                raise ProtocolError(f"STORE failed: {server_text(data)}")

    def set_seen(self, keys: list[ImapKey], seen: bool) -> list[ItemResult]:
        change = "+FLAGS.SILENT (\\Seen)" if seen else "-FLAGS.SILENT (\\Seen)"

        def mark(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            self._store(present, change)
            return {key: ItemResult(key, "done", "marked read" if seen else "marked unread") for key in present}

        return self._by_folder(keys, mark)

    def set_flags(self, keys: list[ImapKey], flags: tuple[str, ...], on: bool) -> list[ItemResult]:
        """``UID STORE +FLAGS.SILENT`` / ``-FLAGS.SILENT`` (flags are atoms, checked before they are sent)."""
        names = " ".join(check_flag_names(flags))
        change = f"{'+' if on else '-'}FLAGS.SILENT ({names})"
        said = f"{'added' if on else 'removed'} {names}"

        def store(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            self._store(present, change)
            return {key: ItemResult(key, "done", said) for key in present}

        return self._by_folder(keys, store)

    def _expunge(self, keys: list[ImapKey], *, allow_expunge_all: bool) -> None:
        """Expunge exactly ``keys``: UID EXPUNGE, or (opted in) EXPUNGE with others' \\Deleted lifted first."""
        if "UIDPLUS" in self._capabilities:
            for chunk in chunked([key.uid for key in keys], _WRITE_CHUNK):
                typ, data = self._uid("EXPUNGE", uid_set(chunk))
                if typ != "OK":
                    raise ProtocolError(f"UID EXPUNGE failed: {server_text(data)}")
            return
        if not allow_expunge_all:
            raise UnsupportedError(
                "the server offers neither MOVE nor UIDPLUS, so removing these messages would need a bare "
                "EXPUNGE, which can remove other messages marked \\Deleted; nothing was changed",
                hint="pass allow_expunge_all=True (CLI: --allow-expunge-all) to accept that risk",
            )
        mine = {key.uid for key in keys}
        typ, data = self._uid("SEARCH", "DELETED")
        others = [int(t) for line in data if isinstance(line, bytes) for t in line.split() if int(t) not in mine]
        if others:
            self._uid("STORE", uid_set(others), "-FLAGS.SILENT (\\Deleted)")
        try:
            self._call(lambda c: c._simple_command("EXPUNGE"))
        finally:
            if others:
                self._uid("STORE", uid_set(others), "+FLAGS.SILENT (\\Deleted)")

    def move(self, keys: list[ImapKey], folder: str) -> list[ItemResult]:
        allow_expunge_all = bool(call_option("allow_expunge_all", False))
        target = mailbox_arg(self._server_name(folder))
        use_move = "MOVE" in self._capabilities
        if not use_move and "UIDPLUS" not in self._capabilities and not allow_expunge_all:
            self._expunge([], allow_expunge_all=False)  # raises the explanation before any change

        def move_group(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            new_uids: dict[int, int] = {}
            validity = 0
            by_uid = {key.uid: key for key in present}
            ids = self._message_ids(list(by_uid))  # one pipelined FETCH for all: what a retry looks them up by
            for chunk in chunked(list(by_uid), _WRITE_CHUNK):
                group = [by_uid[uid] for uid in chunk]
                sent = {key: PendingChange("move", folder, ids.get(key.uid)) for key in group}
                with self._pending_while(sent):
                    command = "MOVE" if use_move else "COPY"
                    typ, data = self._uid(command, uid_set(chunk), target)
                    if typ != "OK":
                        raise _refused_target(command, folder, data, self._known_folders)
                    copied = copyuid(self._require().untagged_responses.get("OK", []), data)
                    if copied is not None:
                        validity, mapping = copied
                        new_uids.update(mapping)
                    if not use_move:
                        self._store(group, "+FLAGS.SILENT (\\Deleted)")
                        self._expunge(group, allow_expunge_all=allow_expunge_all)
            return {
                key: ItemResult(
                    key,
                    "done",
                    f"moved to {folder}",
                    ImapKey(normal_inbox(folder), validity, new_uids[key.uid]) if key.uid in new_uids else None,
                )
                for key in present
            }

        return self._by_folder(keys, move_group, settles="move", target=normal_inbox(folder))

    def delete(self, keys: list[ImapKey]) -> list[ItemResult]:
        allow_expunge_all = bool(call_option("allow_expunge_all", False))
        if "UIDPLUS" not in self._capabilities and not allow_expunge_all:
            self._expunge([], allow_expunge_all=False)

        def delete_group(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            with self._pending_while({key: PendingChange("delete") for key in present}):
                self._store(present, "+FLAGS.SILENT (\\Deleted)")
                self._expunge(present, allow_expunge_all=allow_expunge_all)
            return {key: ItemResult(key, "done", "deleted") for key in present}

        return self._by_folder(keys, delete_group, settles="delete")

    def create_folder(self, name: str) -> Folder:
        """CREATE ``name`` (the server makes the levels above it); a folder that exists already is returned as is."""
        self._forget_ahead()
        target = self._server_name(name)
        typ, data = self._call(lambda c: c._simple_command("CREATE", mailbox_arg(target)))
        found = [f for f in self.folders(name) if f.name.casefold() == user_path(name).casefold()]
        if found:
            if typ != "OK":
                _log.info("folder %r exists already", name)
            return found[0]
        raise ProtocolError(f"cannot create folder {name!r}: {server_text(data)}", hint=self._known_folders())

    def rename_folder(self, name: str, new_name: str) -> Folder:
        """RENAME (RFC 3501 §6.3.5: its subfolders go with it)."""
        self._forget_ahead()
        self._close_selected(name)
        typ, data = self._call(
            lambda c: c._simple_command(
                "RENAME", mailbox_arg(self._server_name(name)), mailbox_arg(self._server_name(new_name))
            )
        )
        if typ != "OK":
            raise ProtocolError(f"cannot rename folder {name!r}: {server_text(data)}", hint=self._known_folders())
        found = [f for f in self.folders(new_name) if f.name.casefold() == user_path(new_name).casefold()]
        if not found:
            raise ProtocolError(f"the server did not show {new_name!r} after renaming {name!r}")
        return found[0]

    def delete_folder(self, name: str) -> None:
        """DELETE (the messages in it go with it)."""
        self._forget_ahead()
        self._close_selected(name)
        typ, data = self._call(lambda c: c._simple_command("DELETE", mailbox_arg(self._server_name(name))))
        if typ != "OK":
            raise ProtocolError(f"cannot delete folder {name!r}: {server_text(data)}", hint=self._known_folders())

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        self._forget_ahead()
        target = mailbox_arg(self._server_name(folder))
        flags = "(\\Seen)" if seen else None
        stamp = imaplib.Time2Internaldate(dt.datetime.now(dt.UTC))
        typ, data = self._call(lambda c: c.append(target, flags, stamp, raw))
        if typ != "OK":
            raise _refused_target("APPEND", folder, data, self._known_folders)

    def save_draft(self, raw: bytes) -> str:
        """APPEND with ``\\Draft \\Seen`` to the folder flagged ``\\Drafts`` (RFC 6154), else one named as
        clients name it, else a new ``Drafts``."""
        self._forget_ahead()
        found = self.folders()
        flagged = [f.name for f in found if "\\DRAFTS" in {flag.upper() for flag in f.flags}]
        named = [f.name for f in found if f.name.rpartition("/")[2].casefold() in _DRAFT_NAMES]
        folder = (flagged or sorted(named, key=lambda n: n.count("/")) or [""])[0] or self.create_folder("Drafts").name
        target = mailbox_arg(self._server_name(folder))
        stamp = imaplib.Time2Internaldate(dt.datetime.now(dt.UTC))
        typ, data = self._call(lambda c: c.append(target, "(\\Seen \\Draft)", stamp, raw))
        if typ != "OK":
            raise _refused_target("APPEND", folder, data, self._known_folders)
        return folder

    def has_message_id(self, folder: str, message_id: str) -> bool:
        self._select(folder, writable=False)
        _typ, data = self._uid("SEARCH", "HEADER", "Message-ID", quote(message_id))
        return any(chunk and bytes(chunk).split() for chunk in data)


#: What clients name the drafts folder when the server flags none as ``\\Drafts``.
_DRAFT_NAMES = ("drafts", "draft", "entwürfe", "brouillons", "borradores")


def _refused_target(command: str, folder: str, data: object, known: Callable[[], str]) -> PostroomError:
    """A MOVE, COPY or APPEND the server refused: a missing folder (``[TRYCREATE]``, RFC 3501 §6.4.7) is the
    caller's to fix, and says how; anything else is the server's answer as it came."""
    reply = server_text(data)
    if "TRYCREATE" in reply.upper():
        return ConfigError(
            "folder",
            f"there is no folder {folder!r} on the server; nothing was changed",
            hint=f"create it first: postroom.create_folder(session, {folder!r}) (CLI: postroom create-folder); "
            + known(),
        )
    return ProtocolError(f"{command} to {folder!r} failed: {reply}")
