"""The values to scrub from text: every secret this process revealed, bounded, newest kept.

Below every other module (logs, credentials, errors' callers), so that each can scrub.
A refreshed token *replaces* the one it renews (:func:`replace`) instead of piling up.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

__all__ = ["MASK", "forget", "redact", "remember", "replace"]

MASK: Final = "***"
#: Shorter values would mangle ordinary text.
MIN_LENGTH: Final = 3
#: At most this many values are kept (the oldest go first): a long-running bot refreshes tokens for months.
MAX_VALUES: Final = 4096

_lock = threading.Lock()
_values: OrderedDict[str, None] = OrderedDict()
_by_length: tuple[str, ...] = ()  # longest first; rebuilt only when the set changes, not per log line


def _rebuild() -> None:
    global _by_length
    _by_length = tuple(sorted(_values, key=len, reverse=True))


def remember(value: str) -> None:
    """Scrub ``value`` from every text :func:`redact` sees from now on."""
    if len(value) < MIN_LENGTH:
        return
    with _lock:
        if value in _values:
            _values.move_to_end(value)
            return
        _values[value] = None
        while len(_values) > MAX_VALUES:
            _values.popitem(last=False)
        _rebuild()


def forget(value: str) -> None:
    """Stop scrubbing ``value`` (a token that was revoked and replaced)."""
    with _lock:
        if _values.pop(value, 0) is None:
            _rebuild()


def replace(old: str | None, new: str) -> None:
    """A renewed secret takes the place of the one it renews."""
    if old:
        forget(old)
    remember(new)


def redact(text: str) -> str:
    """``text`` with every remembered value replaced by ``***``."""
    for value in _by_length:
        if value in text:
            text = text.replace(value, MASK)
    return text
