"""Message keys: a stable, opaque address of one message, owned by the backend that made it.

Each backend subclasses :class:`MessageKey` with its own fields and string form
(IMAP ``INBOX;UIDVALIDITY=123;UID=45``, POP3 ``pop3:UIDL``, EWS ``ews:INBOX;ID=…``)
and names its *scheme* in the class statement::

    @dataclass(frozen=True, slots=True)
    class ImapKey(MessageKey, scheme="imap", prefixed=False): ...

:meth:`MessageKey.parse` finds the backend from the string's ``scheme:`` prefix, so a
key printed by ``postroom list``, found in ``properties()["key"]`` or in a log line is
accepted everywhere a message is. Keys are never sequence numbers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from postroom.errors import ConfigError

__all__ = ["KeyList", "KeyRun", "MessageKey"]


class MessageKey(ABC):
    """A stable address of one message. Hashable and immutable; its ``str()`` round-trips through :meth:`parse`."""

    __slots__ = ()

    #: The backend's scheme: the prefix of the string form (``pop3:``), unless the backend's keys are unprefixed.
    scheme: ClassVar[str]
    _schemes: ClassVar[dict[str, type[MessageKey]]] = {}
    _unprefixed: ClassVar[type[MessageKey] | None] = None

    #: The folder the message is in (``INBOX`` where the protocol has no folders).
    folder: str

    def __init_subclass__(cls, *, scheme: str = "", prefixed: bool = True, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # ``@dataclass(slots=True)`` builds a second class from the first: it takes over the first's scheme
        scheme = scheme or str(cls.__dict__.get("scheme", ""))
        if not scheme:
            return
        previous = MessageKey._schemes.get(scheme)
        if previous is not None and previous.__qualname__ != cls.__qualname__:
            raise TypeError(f"key scheme {scheme!r} is taken by {previous.__qualname__}")
        cls.scheme = scheme
        MessageKey._schemes[scheme] = cls
        if not prefixed or (previous is not None and MessageKey._unprefixed is previous):
            MessageKey._unprefixed = cls

    @property
    @abstractmethod
    def id(self) -> int | str:
        """The message's id within its folder (IMAP UID, POP3 UIDL, EWS or Graph item id)."""

    @property
    def epoch(self) -> str | None:
        """What the key is valid under, where the server can renumber a folder (IMAP's UIDVALIDITY); None where
        ids are stable for good (POP3 UIDL, EWS and Graph ids)."""
        return None

    @abstractmethod
    def __str__(self) -> str:
        """The string form, accepted by :meth:`parse`."""

    @classmethod
    @abstractmethod
    def from_text(cls, text: str) -> MessageKey | None:
        """The key from its string form without the ``scheme:`` prefix, or None if ``text`` is not one."""

    @staticmethod
    def parse(text: str | MessageKey) -> MessageKey:
        """A key from its string form, whichever backend made it."""
        if isinstance(text, MessageKey):
            return text
        if not isinstance(text, str):
            raise ConfigError("key", f"expected a message key, got {type(text).__name__}")
        scheme, colon, rest = text.partition(":")
        owner = MessageKey._schemes.get(scheme) if colon else None
        found = owner.from_text(rest) if owner is not None and owner is not MessageKey._unprefixed else None
        if found is None and MessageKey._unprefixed is not None:
            found = MessageKey._unprefixed.from_text(text)
        if found is None:
            raise ConfigError("key", f"{text!r} is not a message key", hint="copy it from `postroom list --json`")
        return found


class KeyRun(ABC):
    """Keys of one folder, in loop order: what a search returns. A backend may store them compactly."""

    __slots__ = ()

    #: The folder all these keys are in.
    folder: str

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def keys(self, start: int = 0, stop: int | None = None) -> list[MessageKey]:
        """:class:`MessageKey` objects for the slice ``start:stop``."""


@dataclass(frozen=True)
class KeyList(KeyRun):
    """A run held as key objects: for backends whose searches return few keys or long string ids."""

    folder: str
    items: Sequence[MessageKey] = ()

    def __len__(self) -> int:
        return len(self.items)

    def keys(self, start: int = 0, stop: int | None = None) -> list[MessageKey]:
        return list(self.items[start:stop])
