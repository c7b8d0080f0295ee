"""The first ledger: mailboxes, items, effects (journal and outbox), workers.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "postroom_mailbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("bot", sa.String(100), nullable=False),
        sa.Column("identity", sa.String(500), nullable=False),
        sa.Column("folder", sa.String(500), nullable=False),
        sa.Column("epoch", sa.String(100)),
        sa.Column("position", sa.Text),
        sa.Column("state_token", sa.String(200)),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", sa.Float),
        sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_checked_at", sa.Float),
        sa.Column("trigger", sa.String(40)),
        sa.Column("last_error", sa.Text),
        sa.Column("notice", sa.Text),
        sa.UniqueConstraint("bot", "identity", "folder", name="postroom_mailbox_unique"),
    )
    op.create_table(
        "postroom_item",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("mailbox_id", _ID, sa.ForeignKey("postroom_mailbox.id", ondelete="CASCADE"), nullable=False),
        sa.Column("key", sa.String(1000), nullable=False),
        sa.Column("epoch", sa.String(100)),
        sa.Column("message_id", sa.String(1000)),
        sa.Column("received", sa.String(40)),
        sa.Column("size", sa.BigInteger),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("claim_owner", sa.String(200)),
        sa.Column("claim_until", sa.Float),
        sa.Column("fence", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_try_at", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("new_key", sa.String(1000)),
        sa.Column("seen_at", sa.Float),
        sa.Column("done_at", sa.Float),
        sa.Column("updated_at", sa.Float),
        sa.UniqueConstraint("mailbox_id", "key", name="postroom_item_unique"),
    )
    op.create_index("postroom_item_state", "postroom_item", ["mailbox_id", "state"])
    op.create_index("postroom_item_fingerprint", "postroom_item", ["mailbox_id", "message_id"])
    op.create_table(
        "postroom_effect",
        sa.Column("item_id", _ID, sa.ForeignKey("postroom_item.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message_id", sa.String(1000)),
        sa.Column("detail", sa.Text),
        sa.Column("updated_at", sa.Float),
    )
    op.create_table(
        "postroom_worker",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("bot", sa.String(100), nullable=False),
        sa.Column("host", sa.String(200)),
        sa.Column("pid", sa.Integer),
        sa.Column("kind", sa.String(20)),
        sa.Column("started_at", sa.Float),
        sa.Column("seen_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("postroom_worker")
    op.drop_table("postroom_effect")
    op.drop_table("postroom_item")
    op.drop_table("postroom_mailbox")
