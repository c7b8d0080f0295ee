"""The server's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

Secrets (client secrets, access and refresh tokens, a pending sign-in's PKCE verifier) are stored sealed
(:class:`~postroom.server.sealing.Sealer`); session ids and runner keys only as their SHA-256. The audit
table is append-only: the database itself refuses to change or delete a row (a trigger).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "attribute_values",
    "attributes",
    "audit",
    "connection_roles",
    "connections",
    "credentials",
    "locker_consumers",
    "locker_members",
    "lockers",
    "metadata",
    "role_permissions",
    "roles",
    "runner_roles",
    "runners",
    "sign_ins",
    "tokens",
    "user_roles",
    "users",
    "web_sessions",
]

metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _ref(table: str) -> ForeignKey:
    return ForeignKey(f"{table}.id", ondelete="CASCADE")


users = Table(
    "srv_user",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("display_name", String(200)),
    Column("password_hash", String(200), nullable=False),
    Column("active", Boolean, nullable=False, server_default="1"),
    Column("created_at", Float, nullable=False),
)

roles = Table(
    "srv_role",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("description", Text),
)

role_permissions = Table(
    "srv_role_permission",
    metadata,
    Column("role_id", _ID, _ref("srv_role"), primary_key=True),
    Column("permission", String(60), primary_key=True),
)

user_roles = Table(
    "srv_user_role",
    metadata,
    Column("user_id", _ID, _ref("srv_user"), primary_key=True),
    Column("role_id", _ID, _ref("srv_role"), primary_key=True),
)

web_sessions = Table(
    "srv_web_session",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie's value
    Column("user_id", _ID, _ref("srv_user"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

runners = Table(
    "srv_runner",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False),
    Column("created_by", String(200)),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
)

runner_roles = Table(
    "srv_runner_role",
    metadata,
    Column("runner_id", _ID, _ref("srv_runner"), primary_key=True),
    Column("role_id", _ID, _ref("srv_role"), primary_key=True),
)

connections = Table(
    "srv_connection",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("provider", String(40), nullable=False),
    Column("tenant", String(200)),
    Column("cloud", String(40)),
    Column("authority", String(1000)),
    Column("authorize_url", String(1000)),
    Column("token_url", String(1000)),
    Column("scopes", Text),
    Column("grant", String(40), nullable=False),
    Column("client_id", String(500), nullable=False),
    Column("client_secret", LargeBinary),
    Column("token_type", String(10), nullable=False),
    Column("protocols", String(200), nullable=False),
    Column("created_by", String(200)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("version", Integer, nullable=False, server_default="1"),
)

connection_roles = Table(
    "srv_connection_role",
    metadata,
    Column("connection_id", _ID, _ref("srv_connection"), primary_key=True),
    Column("role_id", _ID, _ref("srv_role"), primary_key=True),
)

tokens = Table(
    "srv_token",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("connection_id", _ID, _ref("srv_connection"), nullable=False),
    Column("principal", String(60), nullable=False),  # "shared", or "user:<id>"
    Column("user_id", _ID, _ref("srv_user")),
    Column("access_token", LargeBinary),
    Column("expires_at", Float),
    Column("refresh_token", LargeBinary),
    Column("scopes", Text),
    Column("subject", String(500)),
    Column("generation", BigInteger, nullable=False, server_default="0"),
    Column("refreshing_until", Float),
    Column("signed_in_at", Float),
    Column("signed_in_by", String(200)),
    Column("last_refresh_at", Float),
    Column("last_used_at", Float),
    Column("last_error", Text),
    Column("revoked_at", Float),
    UniqueConstraint("connection_id", "principal", name="srv_token_unique"),
)

sign_ins = Table(
    "srv_sign_in",
    metadata,
    Column("nonce", String(64), primary_key=True),
    Column("connection_id", _ID, _ref("srv_connection"), nullable=False),
    Column("principal", String(60), nullable=False),
    Column("user_id", _ID, _ref("srv_user"), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("private", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

audit = Table(
    "srv_audit",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor_kind", String(20), nullable=False),  # user, runner, system, anonymous
    Column("actor", String(200)),
    Column("action", String(60), nullable=False),
    Column("outcome", String(20), nullable=False),  # ok, refused, failed
    Column("connection", String(200)),
    Column("principal", String(200)),
    Column("run_id", String(200)),
    Column("target", String(500)),
    Column("ip", String(60)),
    Column("detail", Text),
    Index("srv_audit_at", "at"),
    Index("srv_audit_action", "action", "at"),
)

lockers = Table(
    "srv_locker",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("description", Text),
    Column("created_by", String(200)),
    Column("created_at", Float, nullable=False),
)

#: A locker's users: ``owner``, ``manager`` or ``participant``.
locker_members = Table(
    "srv_locker_member",
    metadata,
    Column("locker_id", _ID, _ref("srv_locker"), primary_key=True),
    Column("user_id", _ID, _ref("srv_user"), primary_key=True),
    Column("membership", String(20), nullable=False),
)

#: The roles whose runs may use a locker's credentials.
locker_consumers = Table(
    "srv_locker_consumer",
    metadata,
    Column("locker_id", _ID, _ref("srv_locker"), primary_key=True),
    Column("role_id", _ID, _ref("srv_role"), primary_key=True),
)

credentials = Table(
    "srv_credential",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("locker_id", _ID, _ref("srv_locker"), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", Text),
    Column("owner_id", _ID, _ref("srv_user"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("locker_id", "name", name="srv_credential_unique"),
)

#: A credential's attributes: standard (one sealed value) or user-provided (a value per consumer).
attributes = Table(
    "srv_attribute",
    metadata,
    Column("credential_id", _ID, _ref("srv_credential"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("user_provided", Boolean, nullable=False),
    Column("masked", Boolean, nullable=False),
    Column("value", LargeBinary),
)

attribute_values = Table(
    "srv_attribute_value",
    metadata,
    Column("credential_id", _ID, _ref("srv_credential"), primary_key=True),
    Column("name", String(100), primary_key=True),
    Column("user_id", _ID, _ref("srv_user"), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)
