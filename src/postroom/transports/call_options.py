"""Options an action passes to one call of a transport, without widening the Mailbox contract.

An option belongs to the transports that read it; the others ignore it. Today:
``allow_expunge_all`` (IMAP without MOVE and UIDPLUS: accept a bare EXPUNGE).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

__all__ = ["call_option", "call_options"]

_EMPTY: MappingProxyType[str, Any] = MappingProxyType({})
_current: ContextVar[MappingProxyType[str, Any]] = ContextVar("postroom_call_options", default=_EMPTY)


@contextlib.contextmanager
def call_options(**options: Any) -> Iterator[None]:
    """Set ``options`` for the transport calls made inside the ``with`` block (this thread or task only)."""
    token = _current.set(MappingProxyType({**_current.get(), **options}))
    try:
        yield
    finally:
        _current.reset(token)


def call_option(name: str, default: Any = None) -> Any:
    """The option ``name`` of the current call, else ``default``."""
    return _current.get().get(name, default)
