"""``postroom server``: managed OAuth connections and their tokens, for many bots on many machines.

The pieces, each in a module of its own: :mod:`~postroom.server.settings` (what it needs to run),
:mod:`~postroom.server.sealing` (the key outside the database), :mod:`~postroom.server.store` (tables and
migrations), :mod:`~postroom.server.accounts` (users, roles, web sessions),
:mod:`~postroom.server.runners` (runner keys), :mod:`~postroom.server.connections`,
:mod:`~postroom.server.sign_in` (the two-phase OAuth sign-in), :mod:`~postroom.server.tokens` (the
single-flight refresh), :mod:`~postroom.server.audit`, and :mod:`~postroom.server.web` (pages and API).
"""

from postroom.server.settings import ServerSettings

__all__ = ["ServerSettings"]
