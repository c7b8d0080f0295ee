"""The shared credential vault: lockers, their members and consumers, credentials and their attributes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ref(table: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{table}.id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "srv_locker",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "srv_locker_member",
        sa.Column("locker_id", _ID, _ref("srv_locker"), primary_key=True),
        sa.Column("user_id", _ID, _ref("srv_user"), primary_key=True),
        sa.Column("membership", sa.String(20), nullable=False),
    )
    op.create_table(
        "srv_locker_consumer",
        sa.Column("locker_id", _ID, _ref("srv_locker"), primary_key=True),
        sa.Column("role_id", _ID, _ref("srv_role"), primary_key=True),
    )
    op.create_table(
        "srv_credential",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("locker_id", _ID, _ref("srv_locker"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("owner_id", _ID, _ref("srv_user"), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("locker_id", "name", name="srv_credential_unique"),
    )
    op.create_table(
        "srv_attribute",
        sa.Column("credential_id", _ID, _ref("srv_credential"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("user_provided", sa.Boolean, nullable=False),
        sa.Column("masked", sa.Boolean, nullable=False),
        sa.Column("value", sa.LargeBinary),
    )
    op.create_table(
        "srv_attribute_value",
        sa.Column("credential_id", _ID, _ref("srv_credential"), primary_key=True),
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("user_id", _ID, _ref("srv_user"), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "srv_attribute_value",
        "srv_attribute",
        "srv_credential",
        "srv_locker_consumer",
        "srv_locker_member",
        "srv_locker",
    ):
        op.drop_table(table)
