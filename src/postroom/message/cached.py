"""A cached property without :func:`functools.cached_property`'s lock.

On Python 3.11 ``cached_property`` takes a class-wide lock on every first
computation (removed in 3.12); a loop computes a dozen properties for each of
100,000 messages, so the lock shows in profiles. A :class:`Message` belongs to
one loop: two threads computing the same value at once both get an equal result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

__all__ = ["cached"]

T = TypeVar("T")


class cached(Generic[T]):  # noqa: N801 - used like the decorator it replaces
    """Compute on first access, then store in the instance's ``__dict__`` (later reads never call this)."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        """What ``help(Message)`` shows for the property: its type and the first line of its doc."""
        kind = self.func.__annotations__.get("return", "")
        doc = (self.__doc__ or "").strip().splitlines()
        return f"<property: {kind}{' — ' + doc[0] if doc else ''}>"

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> cached[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | cached[T]:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.name] = value
        return value
