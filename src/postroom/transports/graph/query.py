"""The filter planner: what of a loop's filter Graph serves, as ``$filter`` and ``$orderby``.

Graph's rules, which the planner cannot break:

- a property in ``$orderby`` must come first in ``$filter``, or Graph answers ``400
  InefficientFilter``: with an order, the filter starts with ``receivedDateTime`` (the
  date range, else "since 1900");
- ``contains()`` and ``$orderby`` together are refused too: a subject search is sent without
  an order, and the loop sorts the listing itself;
- ``$search`` cannot be combined with ``$filter`` or ``$orderby``, matches whole words (KQL),
  not substrings, and stops at 1,000 results: it would lose messages that the loop's rules
  match, so the planner never uses it.

What Graph does not serve (regular expressions, senders, case-sensitive subjects) is checked
on the client, as every condition is again on the listed fields: the server part is always a
superset of the loop's result.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from postroom.filters import MessageFilter, server_term

__all__ = ["GraphQuery", "graph_time", "plan"]

_EPOCH = "1900-01-01T00:00:00Z"


@dataclass(frozen=True)
class GraphQuery:
    """Query options for one folder's listing."""

    filter: str | None
    orderby: str | None
    #: True when Graph applies every condition of the filter (and sorts): the loop's ``limit`` can stop the paging.
    complete: bool

    def params(self) -> dict[str, str]:
        found = {}
        if self.filter:
            found["$filter"] = self.filter
        if self.orderby:
            found["$orderby"] = self.orderby
        return found


def graph_time(value: dt.datetime) -> str:
    """A time as Graph's filters take it, in whole seconds of UTC (``2026-12-01T08:00:00Z``)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _literal(text: str) -> str:
    """An OData string literal: single quotes doubled (user text never ends the literal)."""
    return "'" + text.replace("'", "''") + "'"


def plan(filter_: MessageFilter) -> GraphQuery:
    """The ``$filter``/``$orderby`` for ``filter_`` under Graph's rules."""
    dates = []
    if filter_.since_at is not None:
        dates.append(f"receivedDateTime ge {graph_time(filter_.since_at)}")
    if filter_.before_at is not None:
        dates.append(f"receivedDateTime lt {graph_time(filter_.before_at)}")
    others = []
    if filter_.status != "all":
        others.append(f"isRead eq {'true' if filter_.status == 'read' else 'false'}")
    term = None
    if filter_.subject and not filter_.regex:
        term = server_term(filter_.subject, case_sensitive=filter_.case_sensitive)
    if term:
        clauses = [*dates, *others, f"contains(subject,{_literal(term)})"]
        # contains() with $orderby is refused: no order, the loop sorts
        return GraphQuery(" and ".join(clauses), None, complete=False)
    direction = "desc" if filter_.order == "newest" else "asc"
    first = dates or [f"receivedDateTime ge {_EPOCH}"]
    return GraphQuery(
        " and ".join([*first, *others]),
        f"receivedDateTime {direction}",
        complete=not filter_.senders and filter_.subject is None,
    )
