"""Secrets that cannot show themselves, and a scrubber for text that might hold one.

A :class:`Secret` holds a resolved value. Its ``repr`` and ``str`` are ``'***'``;
the value comes out only through :meth:`Secret.reveal`, which the transports call
at the last moment. Every revealed value is remembered (in this process only) so
that :func:`redact` can scrub it from server replies, log lines and error text.
"""

from __future__ import annotations

from postroom.redaction import MASK as _MASK
from postroom.redaction import redact, remember

__all__ = ["IDENTITY_FIELDS", "Secret", "redact", "scrubbed"]

#: Fields that name someone or something rather than unlock it: typed in without a warning, never scrubbed
#: from logs, error text or URLs (a tenant id in a sign-in URL is what one needs to see when debugging).
IDENTITY_FIELDS = frozenset({"username", "client_id", "tenant_id"})


def scrubbed(field_name: str) -> bool:
    """Whether a resolved value of ``field_name`` is blanked out of log lines and error text."""
    return field_name not in IDENTITY_FIELDS


class Secret:
    """A secret value. Never printed, logged or compared by identity of text.

    >>> Secret("hunter2")
    Secret('***')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str, *, scrub: bool = True) -> None:
        """``scrub=False`` for identities (usernames): hidden in ``repr`` but not blanked out of every text."""
        self._value = value
        if scrub:
            remember(value)

    def reveal(self) -> str:
        """The value itself. Call only where it goes onto the wire."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({_MASK!r})"

    def __str__(self) -> str:
        return _MASK

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:  # pickling would write the value to disk
        raise TypeError("a Secret cannot be pickled")
