"""IMAP writing: flags, moves, deletes and appends by ``(folder, UIDVALIDITY, UID)``; never a bare EXPUNGE
unless the caller accepted it (``allow_expunge_all``), and then with other messages' ``\\Deleted`` lifted."""

from __future__ import annotations

import datetime as dt
import imaplib
from collections.abc import Callable

from postroom.errors import ProtocolError, UnsupportedError
from postroom.transports.call_options import call_option
from postroom.transports.contract import ItemResult
from postroom.transports.errors import server_text
from postroom.transports.imap.connection import (
    _WRITE_CHUNK,
    ImapConnection,
    _gone,
)
from postroom.transports.imap.folders import normal_inbox
from postroom.transports.imap.keys import ImapKey
from postroom.transports.imap.syntax import chunked, copyuid, mailbox_arg, quote, uid_set

__all__ = ["ImapWriting"]


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
        self, keys: list[ImapKey], action: Callable[[list[ImapKey]], dict[ImapKey, ItemResult]]
    ) -> list[ItemResult]:
        """Run ``action`` per folder; return one result per key, in input order."""
        self._forget_ahead()
        results: dict[ImapKey, ItemResult] = {}
        for folder in dict.fromkeys(key.folder for key in keys):
            group = [key for key in keys if key.folder == folder]
            self._select_for(group, writable=True)
            existing = self._existing(group)
            present = [key for key in group if key.uid in existing]
            for key in group:
                if key.uid not in existing:
                    results[key] = ItemResult(key, "failed", "not found: already moved or deleted", error=_gone(key))
            if present:
                results.update(action(present))
        return [results[key] for key in keys]

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
            for chunk in chunked([key.uid for key in present], _WRITE_CHUNK):
                command = "MOVE" if use_move else "COPY"
                typ, data = self._uid(command, uid_set(chunk), target)
                if typ != "OK":
                    raise ProtocolError(f"{command} to {folder!r} failed: {server_text(data)}")
                copied = copyuid(self._require().untagged_responses.get("OK", []), data)
                if copied is not None:
                    validity, mapping = copied
                    new_uids.update(mapping)
                if not use_move:
                    group = [key for key in present if key.uid in set(chunk)]
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

        return self._by_folder(keys, move_group)

    def delete(self, keys: list[ImapKey]) -> list[ItemResult]:
        allow_expunge_all = bool(call_option("allow_expunge_all", False))
        if "UIDPLUS" not in self._capabilities and not allow_expunge_all:
            self._expunge([], allow_expunge_all=False)

        def delete_group(present: list[ImapKey]) -> dict[ImapKey, ItemResult]:
            self._store(present, "+FLAGS.SILENT (\\Deleted)")
            self._expunge(present, allow_expunge_all=allow_expunge_all)
            return {key: ItemResult(key, "done", "deleted") for key in present}

        return self._by_folder(keys, delete_group)

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        self._forget_ahead()
        target = mailbox_arg(self._server_name(folder))
        flags = "(\\Seen)" if seen else None
        stamp = imaplib.Time2Internaldate(dt.datetime.now(dt.UTC))
        typ, data = self._call(lambda c: c.append(target, flags, stamp, raw))
        if typ != "OK":
            raise ProtocolError(f"APPEND to {folder!r} failed: {server_text(data)}")

    def has_message_id(self, folder: str, message_id: str) -> bool:
        self._select(folder, writable=False)
        _typ, data = self._uid("SEARCH", "HEADER", "Message-ID", quote(message_id))
        return any(chunk and bytes(chunk).split() for chunk in data)
