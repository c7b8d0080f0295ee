"""The ledger's tables (SQLAlchemy Core): one schema for SQLite and PostgreSQL.

- ``postroom_mailbox``: one row per (bot, mailbox, folder) watched: the UIDVALIDITY (or other epoch) its
  items are keyed under, a saved position (Graph delta), the poll lease with its fencing token, and the
  trigger's health (when the server was last heard from, the last error).
- ``postroom_item``: one row per message: its key, Message-ID, date and size (to find it again after a
  UIDVALIDITY change), its state (seen → claimed → done | failed), the claim and its fence, attempts.
- ``postroom_effect``: one row per step of a message that has started: the journal that makes a step run
  once, and the outbox for mail (its Message-ID recorded before it is submitted).
- ``postroom_worker``: the workers and runners, with their last heartbeat (``postroom bot status``).
- ``postroom_setting``: the ledger's own settings (its deployment tag).

Times are Unix seconds (floats) from the writer's clock: leases assume hosts within a few seconds (NTP).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["ITEM_STATES", "effects", "items", "mailboxes", "metadata", "settings", "workers"]

metadata = MetaData()

#: An item's states: seen (found, not yet taken), claimed (a worker holds it), done, failed, skipped (another
#: deployment claimed it on the mail server).
ITEM_STATES = ("seen", "claimed", "done", "failed", "skipped")

_ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite's rowid alias must be INTEGER

mailboxes = Table(
    "postroom_mailbox",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("bot", String(100), nullable=False),
    Column("identity", String(500), nullable=False),
    Column("folder", String(500), nullable=False),
    Column("epoch", String(100)),
    Column("position", Text),
    Column("state_token", String(200)),
    Column("lease_owner", String(200)),
    Column("lease_until", Float),
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("last_checked_at", Float),
    Column("trigger", String(40)),
    Column("last_error", Text),
    Column("notice", Text),
    UniqueConstraint("bot", "identity", "folder", name="postroom_mailbox_unique"),
)

items = Table(
    "postroom_item",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("mailbox_id", _ID, ForeignKey("postroom_mailbox.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(1000), nullable=False),
    Column("epoch", String(100)),
    Column("message_id", String(1000)),
    Column("received", String(40)),
    Column("size", BigInteger),
    Column("state", String(16), nullable=False),
    Column("claim_owner", String(200)),
    Column("claim_until", Float),
    Column("fence", BigInteger, nullable=False, server_default="0"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_try_at", Float),
    Column("error", Text),
    Column("new_key", String(1000)),
    Column("seen_at", Float),
    Column("done_at", Float),
    Column("updated_at", Float),
    UniqueConstraint("mailbox_id", "key", name="postroom_item_unique"),
    Index("postroom_item_state", "mailbox_id", "state"),
    Index("postroom_item_fingerprint", "mailbox_id", "message_id"),
)

effects = Table(
    "postroom_effect",
    metadata,
    Column("item_id", _ID, ForeignKey("postroom_item.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", String(40), primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("state", String(16), nullable=False),
    Column("message_id", String(1000)),
    Column("detail", Text),
    Column("updated_at", Float),
)

workers = Table(
    "postroom_worker",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("bot", String(100), nullable=False),
    Column("host", String(200)),
    Column("pid", Integer),
    Column("kind", String(20)),
    Column("started_at", Float),
    Column("seen_at", Float),
)

settings = Table(
    "postroom_setting",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)
