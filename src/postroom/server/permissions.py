"""What a role can let its users (and runners) do, and the roles a new server starts with."""

from __future__ import annotations

from typing import Final

__all__ = ["BUILTIN_ROLES", "PERMISSIONS", "Permission"]


class Permission:
    """The permission names, as stored."""

    MANAGE_CONNECTIONS: Final = "manage_connections"
    VIEW_CONNECTIONS: Final = "view_connections"
    MANAGE_CREDENTIALS: Final = "manage_credentials"
    ADMINISTER_LOCKERS: Final = "administer_lockers"
    RUN_BOTS: Final = "run_bots"
    ADMINISTER_USERS: Final = "administer_users"
    VIEW_AUDIT: Final = "view_audit"


#: Permission → what the UI calls it.
PERMISSIONS: dict[str, str] = {
    Permission.MANAGE_CONNECTIONS: "Manage connections",
    Permission.VIEW_CONNECTIONS: "View connections",
    Permission.MANAGE_CREDENTIALS: "Manage credentials and lockers",
    Permission.ADMINISTER_LOCKERS: "Administer all lockers",
    Permission.RUN_BOTS: "Run bots",
    Permission.ADMINISTER_USERS: "Administer users, roles and runners",
    Permission.VIEW_AUDIT: "View the audit log",
}

#: The roles made on first start: name → (description, permissions).
BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    "Administrator": ("Everything", frozenset(PERMISSIONS)),
    "Connection manager": (
        "Creates and edits OAuth connections and signs in for shared tokens",
        frozenset({Permission.MANAGE_CONNECTIONS, Permission.VIEW_CONNECTIONS}),
    ),
    "Bot runner": (
        "Runs bots: gets tokens for the connections its role is invited to",
        frozenset({Permission.RUN_BOTS}),
    ),
    "Credential manager": (
        "Creates lockers and credentials; owns the lockers it creates",
        frozenset({Permission.MANAGE_CREDENTIALS}),
    ),
    "Bot user": (
        "Signs in for user-specific tokens of the connections its role is invited to",
        frozenset({Permission.VIEW_CONNECTIONS}),
    ),
}
