"""Bots that process each message exactly once: bot files, the ledger, triggers, and Celery workers.

- :mod:`.definition`: the bot file (YAML) and its checks; :mod:`.schema` documents the format;
- :mod:`.ledger`: SQLite or PostgreSQL, with leases, fenced claims, the step journal and the outbox;
- :mod:`.engine`: discovery and processing, shared by :mod:`.local` (one process, threads) and
  :mod:`.celery_app` (``postroom worker``);
- :mod:`.steps`: each step run once; :mod:`.files`: files saved once;
- :mod:`.api`: :class:`Bot`, the same from Python.
"""

from postroom.runner.api import Bot
from postroom.runner.definition import BotDefinition, BotFileError, FailurePolicy, WatchSpec, load_bot, parse_bot
from postroom.runner.local import EXIT_CODES, LocalRunner, RunReport

__all__ = [
    "EXIT_CODES",
    "Bot",
    "BotDefinition",
    "BotFileError",
    "FailurePolicy",
    "LocalRunner",
    "RunReport",
    "WatchSpec",
    "load_bot",
    "parse_bot",
]
