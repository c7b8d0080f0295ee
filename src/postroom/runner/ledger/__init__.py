"""The processing ledger (SQLite by default, PostgreSQL by URL): see :mod:`postroom.runner.ledger.store`."""

from postroom.runner.ledger.store import Claim, Effect, Ledger, LedgerError, LostClaimError, Seen, default_ledger_url

__all__ = ["Claim", "Effect", "Ledger", "LedgerError", "LostClaimError", "Seen", "default_ledger_url"]
