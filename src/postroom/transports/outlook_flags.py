"""What Exchange keeps besides read status, shared by EWS and Graph: the follow-up flag and categories.

``\\Flagged`` is Outlook's follow-up flag; every keyword (``Invoice``) is an Outlook category.
``\\Answered`` and ``\\Draft`` have no counterpart and are refused before anything is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from postroom.errors import UnsupportedError
from postroom.transports.contract import check_flag_names

__all__ = ["OutlookFlags", "outlook_flags"]


@dataclass(frozen=True)
class OutlookFlags:
    """A flag change as Exchange stores it."""

    #: Whether the follow-up flag changes.
    follow_up: bool
    #: The categories that change.
    categories: tuple[str, ...]

    def merged(self, have: list[str], on: bool) -> list[str]:
        """``have`` with the categories added (``on``) or removed, case-insensitively; the others stay."""
        folded = {c.casefold() for c in self.categories}
        if not on:
            return [c for c in have if c.casefold() not in folded]
        present = {h.casefold() for h in have}
        return have + [c for c in self.categories if c.casefold() not in present]


def outlook_flags(flags: tuple[str, ...], server: str) -> OutlookFlags:
    """``flags`` checked (:func:`check_flag_names`) and split into the follow-up flag and categories."""
    check_flag_names(flags)
    unsupported = [f for f in flags if f.startswith("\\") and f.lower() != "\\flagged"]
    if unsupported:
        raise UnsupportedError(
            f"{server} keeps no {unsupported[0]} flag", hint="\\Flagged and categories (keywords) can be set"
        )
    return OutlookFlags(
        follow_up=any(f.startswith("\\") for f in flags),
        categories=tuple(f for f in flags if not f.startswith("\\")),
    )
