"""The in-memory mailbox: every ability of the Mailbox contract, over a :class:`MemoryServer`.

It behaves as a careful IMAP server does (UIDs per folder, UIDVALIDITY, moves that give
new keys, a read that never changes the read status), so bot code and actions can be
unit-tested without a network, and a dry run can use it.
"""

from __future__ import annotations

import email
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from postroom.auth.base import Login, PasswordLogin
from postroom.errors import AuthenticationError, ConnectionLostError, ProtocolError
from postroom.filters import MessageFilter
from postroom.message.keys import KeyList, KeyRun, MessageKey
from postroom.message.raw import RawSource, header_block_of, summary_of_raw
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.testing.server import MemoryServer, StoredMessage
from postroom.transports.contract import Folder, ItemResult, ServerReport, check_flag_names
from postroom.transports.imap.keys import uid_key_parts

__all__ = ["MemoryKey", "MemoryMailbox"]


@dataclass(frozen=True, order=True, slots=True)
class MemoryKey(MessageKey, scheme="memory"):
    """``memory:INBOX;UIDVALIDITY=1;UID=2``."""

    folder: str
    uidvalidity: int
    uid: int

    def __str__(self) -> str:
        return f"memory:{self.folder};UIDVALIDITY={self.uidvalidity};UID={self.uid}"

    @property
    def id(self) -> int:
        return self.uid

    @classmethod
    def from_text(cls, text: str) -> MemoryKey | None:
        parts = uid_key_parts(text)  # IMAP's form, after the scheme
        return cls(*parts) if parts is not None else None


class MemoryMailbox:
    """One session's connection to a :class:`MemoryServer`."""

    def __init__(self, config: object, login: Login) -> None:
        self.config = config
        self._login = login
        self.server = MemoryServer.named(str(getattr(config, "server", "memory")))
        self._open = False
        self._ahead: list[tuple[list[MessageKey], bool]] = []  # summaries sent for ahead, not yet collected
        self._changes = 0
        self._source = RawSource(self._raw_of)
        #: Drop the connection before the next this-many calls (a test's fault injection).
        self.drop_next = 0
        #: Drop the connection right after the next change of this kind ("move", "delete", "seen", "submit") is done,
        #: before its result reaches the caller, as a cut after the server's work does.
        self.drop_after: str | None = None
        #: Changes done whose result never reached the caller: a retry reports them as already done.
        self._pending: dict[MessageKey, tuple[str, ItemResult]] = {}

    # -- connection -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._open

    def open(self) -> None:
        login = self._login
        if self.server.users:
            if not isinstance(login, PasswordLogin):
                raise AuthenticationError("the in-memory server takes a username and password", server=self.address)
            user, password = login.username.reveal(), login.password.reveal()
            if self.server.users.get(user) != password:
                raise AuthenticationError(
                    "the server refused the username or password", hint="check the password", server=self.address
                )
        self._open = True

    @property
    def address(self) -> str:
        return f"memory://{self.server.name}"

    def close(self) -> None:
        self._open = False
        self._ahead = []

    def _check(self) -> None:
        if not self._open:
            raise ConnectionLostError("the connection is closed", server=self.address)
        if self.drop_next > 0:
            self.drop_next -= 1
            self._open = False
            raise ConnectionLostError("the in-memory server dropped the connection", server=self.address)

    def noop(self) -> None:
        self._check()

    def report(self) -> ServerReport:
        self._check()
        return ServerReport(
            protocol="memory",
            address=self.address,
            greeting=f"postroom in-memory server {self.server.name!r}",
            tls_version=None,
            cipher=None,
            capabilities=("MEMORY",),
            folder_count=len(self.server.folders),
            connect_steps="in process",
            probe="noop",
        )

    # -- reading ----------------------------------------------------------------------------------

    def _box(self, folder: str) -> tuple[int, list[int]]:
        box = self.server.folders.get(folder)
        if box is None:
            raise ProtocolError(f"cannot open folder {folder!r}: no such folder", hint=self._known())
        return box.uidvalidity, list(box.messages)

    def _known(self) -> str:
        return "folders on this server: " + ", ".join(sorted(self.server.folders))

    def _stored(self, key: MessageKey) -> StoredMessage | None:
        memory_key = cast(MemoryKey, key)
        box = self.server.folders.get(memory_key.folder)
        if box is None or box.uidvalidity != memory_key.uidvalidity or memory_key.uid not in box.messages:
            return None
        return box.messages[memory_key.uid]

    def _raw_of(self, key: MessageKey) -> bytes:
        found = self._stored(key)
        if found is None:
            raise ProtocolError(f"message {key} is no longer in {key.folder!r}", hint="it was moved or deleted")
        return bytes(found.raw)

    def _folders_for(self, filter_: MessageFilter) -> list[str]:
        names = sorted(self.server.folders)
        if any(ch in filter_.folder for ch in "*%"):
            pattern = filter_.folder.replace("%", "*")
            found = [n for n in names if fnmatch.fnmatchcase(n, pattern) and n.count("/") == pattern.count("/")]
            if not found:
                raise ProtocolError(f"no folder matches {filter_.folder!r}", hint=self._known())
        else:
            found = [filter_.folder]
        if filter_.include_subfolders:
            found += [n for base in list(found) for n in names if n.startswith(base + "/")]
        return list(dict.fromkeys(found))

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        self._check()
        with self.server.lock:
            runs: list[KeyRun] = []
            for folder in self._folders_for(filter_):
                validity, messages = self._box(folder)
                uids = sorted(messages, reverse=filter_.order == "newest")
                runs.append(KeyList(folder, [MemoryKey(folder, validity, uid) for uid in uids]))
            return runs

    def summaries(self, keys: list[MessageKey], *, bodies: bool = False) -> list[MessageSummary]:
        self._check()
        with self.server.lock:
            out = []
            for key in keys:
                found = self._stored(key)
                if found is not None:
                    out.append(summary_of_raw(key, found.raw, flags=frozenset(found.flags), received=found.received))
            return out

    def bodies(self, summaries: list[MessageSummary]) -> dict[tuple[MessageKey, str], bytes]:
        self._check()
        found: dict[tuple[MessageKey, str], bytes] = {}
        for summary in summaries:
            if self._stored(summary.key) is None:
                continue
            plain, html = self._source.structure(summary.key).body_parts()
            part = plain or html
            if part is not None:
                found[(summary.key, part.section)] = self._source.part_content(summary.key, part)
        return found

    def fetch_ahead(self, keys: list[MessageKey], *, bodies: bool = False) -> None:
        self._check()
        self._ahead.append((list(keys), bodies))

    def collect_ahead(self, keys: list[MessageKey], *, bodies: bool = False) -> list[MessageSummary] | None:
        if (keys, bodies) not in self._ahead:
            return None
        del self._ahead[: self._ahead.index((keys, bodies)) + 1]
        return self.summaries(keys, bodies=bodies)

    def part_content(self, key: MessageKey, part: MimePart) -> bytes:
        self._check()
        return self._source.part_content(key, part)

    def stream_part(self, key: MessageKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        data = self.part_content(key, part)
        write(data)
        return len(data)

    def header_block(self, key: MessageKey) -> bytes:
        self._check()
        return self._source.header_block(key)

    def raw(self, key: MessageKey) -> bytes:
        self._check()
        return self._raw_of(key)

    # -- folders ----------------------------------------------------------------------------------

    def folders(self, pattern: str = "*") -> list[Folder]:
        self._check()
        names = sorted(self.server.folders)
        if pattern != "*":
            names = [n for n in names if fnmatch.fnmatchcase(n, pattern.replace("%", "*"))]
        return [Folder(name, "/") for name in names]

    def create_folder(self, name: str) -> Folder:
        self._check()
        self._changed()
        parts = name.split("/")
        for depth in range(1, len(parts) + 1):
            self.server.create_folder("/".join(parts[:depth]))
        return Folder(name, "/")

    # -- changes ----------------------------------------------------------------------------------

    def _changed(self) -> None:
        """A change drops what was fetched ahead, as IMAP does: a loop never yields a message from before it."""
        self._ahead = []
        self._changes += 1

    def _each(self, kind: str, keys: list[MessageKey], change: Callable[[MemoryKey], ItemResult]) -> list[ItemResult]:
        self._check()
        self._changed()
        results = []
        with self.server.lock:
            for key in keys:
                earlier = self._pending.pop(key, None)
                if self._stored(key) is not None:
                    results.append(change(cast(MemoryKey, key)))
                elif earlier is not None and earlier[0] == kind:
                    done = earlier[1]
                    results.append(ItemResult(key, "already_done", f"{done.detail} before the drop", done.new_key))
                else:
                    gone = ProtocolError(f"message {key} is no longer in {key.folder!r}", hint="moved or deleted")
                    results.append(ItemResult(key, "failed", "not found: already moved or deleted", error=gone))
        if self.drop_after == kind:
            self.drop_after = None
            self._pending.update((r.key, (kind, r)) for r in results if r.status == "done")
            self._open = False
            raise ConnectionLostError(
                f"the in-memory server dropped the connection after the {kind}", server=self.address
            )
        return results

    def set_seen(self, keys: list[MessageKey], seen: bool) -> list[ItemResult]:
        def mark(key: MemoryKey) -> ItemResult:
            flags = self.server.folders[key.folder].messages[key.uid].flags
            (flags.add if seen else flags.discard)("\\Seen")
            self.server.log.append(("seen" if seen else "unseen", key.folder, str(key.uid)))
            return ItemResult(key, "done", "marked read" if seen else "marked unread")

        return self._each("seen", keys, mark)

    def set_flags(self, keys: list[MessageKey], flags: tuple[str, ...], on: bool) -> list[ItemResult]:
        check_flag_names(flags)

        def change(key: MemoryKey) -> ItemResult:
            held = self.server.folders[key.folder].messages[key.uid].flags
            for flag in flags:
                (held.add if on else held.discard)(flag)
            self.server.log.append(("flags+" if on else "flags-", key.folder, " ".join(flags)))
            return ItemResult(key, "done", f"{'added' if on else 'removed'} {' '.join(flags)}")

        return self._each("flags", keys, change)

    def move(self, keys: list[MessageKey], folder: str) -> list[ItemResult]:
        if folder not in self.server.folders:
            raise ProtocolError(f"MOVE to {folder!r} failed: no such folder", hint=self._known())

        def move_one(key: MemoryKey) -> ItemResult:
            stored = self.server.folders[key.folder].messages.pop(key.uid)
            uid = self.server.deliver(stored.raw, folder, flags=stored.flags, received=stored.received)
            self.server.log.append(("move", key.folder, str(key.uid), folder))
            target = MemoryKey(folder, self.server.folders[folder].uidvalidity, uid)
            return ItemResult(key, "done", f"moved to {folder}", target)

        return self._each("move", keys, move_one)

    def delete(self, keys: list[MessageKey]) -> list[ItemResult]:
        def delete_one(key: MemoryKey) -> ItemResult:
            del self.server.folders[key.folder].messages[key.uid]
            self.server.log.append(("delete", key.folder, str(key.uid)))
            return ItemResult(key, "done", "deleted")

        return self._each("delete", keys, delete_one)

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        self._check()
        self._changed()
        if folder not in self.server.folders:
            raise ProtocolError(f"APPEND to {folder!r} failed: no such folder", hint=self._known())
        self.server.deliver(raw, folder, flags={"\\Seen"} if seen else ())

    def has_message_id(self, folder: str, message_id: str) -> bool:
        self._check()
        wanted = message_id.strip()
        for stored in self.server.messages(folder):
            header = email.message_from_bytes(header_block_of(stored.raw))
            if str(header.get("Message-ID", "")).strip() == wanted:
                return True
        return False

    def submit(self, raw: bytes, *, save_copy: bool) -> None:
        self._check()
        with self.server.lock:
            self.server.sent.append(bytes(raw))
            if save_copy:
                self.server.deliver(raw, "Sent", flags={"\\Seen"})
        if self.drop_after == "submit":
            self.drop_after = None
            self._open = False
            raise ConnectionLostError("the in-memory server dropped the connection after a submit", server=self.address)
