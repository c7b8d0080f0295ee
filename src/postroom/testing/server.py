"""An in-memory mail server: folders of raw messages with UIDs, flags and arrival times. Thread-safe.

It plays the server's part for :class:`~postroom.testing.mailbox.MemoryMailbox`: several
sessions (and the test itself) see the same folders, as with a real server.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = ["MemoryServer", "StoredMessage"]

_validity = itertools.count(int(dt.datetime.now(dt.UTC).timestamp()) % 1_000_000_000)


@dataclass
class StoredMessage:
    uid: int
    raw: bytes
    flags: set[str]
    received: dt.datetime


@dataclass
class _Folder:
    uidvalidity: int
    next_uid: int = 1
    messages: dict[int, StoredMessage] = field(default_factory=dict)


class MemoryServer:
    """Folders of messages under a name; ``users`` (username → password) are the logins it accepts
    (none given: any login). ``sent`` holds every message submitted through it, in order."""

    _named: ClassVar[dict[str, MemoryServer]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "memory", *, users: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.users = dict(users or {})
        self.lock = threading.RLock()
        self.folders: dict[str, _Folder] = {}
        self.sent: list[bytes] = []
        #: Every change, in order: ("move", folder, uid) and the like (for tests of what a bot did).
        self.log: list[tuple[str, ...]] = []
        self.create_folder("INBOX")

    def __repr__(self) -> str:
        return f"<MemoryServer {self.name!r} folders={sorted(self.folders)}>"

    @classmethod
    def named(cls, name: str, *, users: Mapping[str, str] | None = None) -> MemoryServer:
        """The server called ``name`` in this process, made on first use (an :class:`InMemory` config names it)."""
        with cls._named_lock:
            found = cls._named.get(name)
            if found is None:
                found = cls._named[name] = cls(name, users=users)
            elif users is not None:
                found.users = dict(users)
            return found

    @classmethod
    def forget(cls, name: str) -> None:
        with cls._named_lock:
            cls._named.pop(name, None)

    def create_folder(self, name: str) -> None:
        with self.lock:
            if name not in self.folders:
                self.folders[name] = _Folder(next(_validity))

    def deliver(
        self,
        raw: bytes,
        folder: str = "INBOX",
        *,
        flags: Iterable[str] = (),
        received: dt.datetime | None = None,
    ) -> int:
        """Store ``raw`` in ``folder`` (made if missing) as the next UID; returns the UID."""
        with self.lock:
            self.create_folder(folder)
            box = self.folders[folder]
            uid, box.next_uid = box.next_uid, box.next_uid + 1
            box.messages[uid] = StoredMessage(uid, bytes(raw), set(flags), received or dt.datetime.now(dt.UTC))
            return uid

    def messages(self, folder: str = "INBOX") -> list[StoredMessage]:
        """The messages of ``folder``, oldest first."""
        with self.lock:
            box = self.folders.get(folder)
            return [box.messages[uid] for uid in sorted(box.messages)] if box else []
