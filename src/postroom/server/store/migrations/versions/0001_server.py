"""The server's first schema: users, roles, sessions, runners, connections, tokens, sign-ins, audit.

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
        "srv_user",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200)),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default="1"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "srv_role",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("description", sa.Text),
    )
    op.create_table(
        "srv_role_permission",
        sa.Column("role_id", _ID, sa.ForeignKey("srv_role.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("permission", sa.String(60), primary_key=True),
    )
    op.create_table(
        "srv_user_role",
        sa.Column("user_id", _ID, sa.ForeignKey("srv_user.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role_id", _ID, sa.ForeignKey("srv_role.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "srv_web_session",
        sa.Column("id", sa.String(64), primary_key=True),  # SHA-256 of the cookie's value
        sa.Column("user_id", _ID, sa.ForeignKey("srv_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "srv_runner",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
    )
    op.create_table(
        "srv_runner_role",
        sa.Column("runner_id", _ID, sa.ForeignKey("srv_runner.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role_id", _ID, sa.ForeignKey("srv_role.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "srv_connection",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("provider", sa.String(40), nullable=False),
        sa.Column("tenant", sa.String(200)),
        sa.Column("cloud", sa.String(40)),
        sa.Column("authority", sa.String(1000)),
        sa.Column("authorize_url", sa.String(1000)),
        sa.Column("token_url", sa.String(1000)),
        sa.Column("scopes", sa.Text),
        sa.Column("grant", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(500), nullable=False),
        sa.Column("client_secret", sa.LargeBinary),
        sa.Column("token_type", sa.String(10), nullable=False),
        sa.Column("protocols", sa.String(200), nullable=False),
        sa.Column("created_by", sa.String(200)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_table(
        "srv_connection_role",
        sa.Column("connection_id", _ID, sa.ForeignKey("srv_connection.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role_id", _ID, sa.ForeignKey("srv_role.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "srv_token",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("connection_id", _ID, sa.ForeignKey("srv_connection.id", ondelete="CASCADE"), nullable=False),
        sa.Column("principal", sa.String(60), nullable=False),  # "shared", or "user:<id>"
        sa.Column("user_id", _ID, sa.ForeignKey("srv_user.id", ondelete="CASCADE")),
        sa.Column("access_token", sa.LargeBinary),
        sa.Column("expires_at", sa.Float),
        sa.Column("refresh_token", sa.LargeBinary),
        sa.Column("scopes", sa.Text),
        sa.Column("subject", sa.String(500)),
        sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("refreshing_until", sa.Float),
        sa.Column("signed_in_at", sa.Float),
        sa.Column("signed_in_by", sa.String(200)),
        sa.Column("last_refresh_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("revoked_at", sa.Float),
        sa.UniqueConstraint("connection_id", "principal", name="srv_token_unique"),
    )
    op.create_table(
        "srv_sign_in",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("connection_id", _ID, sa.ForeignKey("srv_connection.id", ondelete="CASCADE"), nullable=False),
        sa.Column("principal", sa.String(60), nullable=False),
        sa.Column("user_id", _ID, sa.ForeignKey("srv_user.id", ondelete="CASCADE"), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("private", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "srv_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor_kind", sa.String(20), nullable=False),  # user, runner, system, anonymous
        sa.Column("actor", sa.String(200)),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),  # ok, refused, failed
        sa.Column("connection", sa.String(200)),
        sa.Column("principal", sa.String(200)),
        sa.Column("run_id", sa.String(200)),
        sa.Column("target", sa.String(500)),
        sa.Column("ip", sa.String(60)),
        sa.Column("detail", sa.Text),
    )
    op.create_index("srv_audit_at", "srv_audit", ["at"])
    op.create_index("srv_audit_action", "srv_audit", ["action", "at"])
    _append_only("srv_audit")


def _append_only(table: str) -> None:
    """The database refuses to change or delete an audit entry, whoever asks."""
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION srv_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION srv_append_only()"
    )


def downgrade() -> None:
    op.drop_table("srv_audit")
    op.drop_table("srv_sign_in")
    op.drop_table("srv_token")
    op.drop_table("srv_connection_role")
    op.drop_table("srv_connection")
    op.drop_table("srv_runner_role")
    op.drop_table("srv_runner")
    op.drop_table("srv_web_session")
    op.drop_table("srv_user_role")
    op.drop_table("srv_role_permission")
    op.drop_table("srv_role")
    op.drop_table("srv_user")
