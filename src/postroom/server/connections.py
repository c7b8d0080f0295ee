"""OAuth connections: an identity provider's app registration, held once by the service for many bots.

A connection names its provider (Microsoft 365 with tenant and cloud, Google, or a custom server),
its grant, the app's client id and secret (sealed), whether its token is shared or user-specific,
the protocols it is for (which decide the scopes), and the roles invited to use it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, bindparam, delete, select

from postroom.auth.oauth.clients import ClientSettings, OAuthClient, make_client
from postroom.auth.oauth.endpoints import MICROSOFT_CLOUDS, OAuthEndpoints, endpoints_for
from postroom.config.providers import PROVIDERS as PROVIDER_PRESETS
from postroom.config.providers import Endpoint
from postroom.credentials import Secret
from postroom.errors import ConfigError
from postroom.server.audit import Actor, record
from postroom.server.sealing import Sealer
from postroom.server.store.tables import connection_roles, connections, roles

__all__ = [
    "GRANTS",
    "PROTOCOLS",
    "PROVIDERS",
    "TOKEN_TYPES",
    "ConnectionSpec",
    "StoredConnection",
    "get_connection",
    "list_connections",
    "save_connection",
]

PROVIDERS = {"microsoft365": "Microsoft 365", "google": "Google", "custom": "Custom"}
GRANTS = {
    "authorization_code_pkce": "Authorization code with PKCE",
    "authorization_code": "Authorization code",
    "client_credentials": "Client credentials",
}
TOKEN_TYPES = {"shared": "Shared", "user": "User-specific"}
PROTOCOLS = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP", "ews": "EWS", "graph": "Outlook (Graph)"}
#: Protocol → the Microsoft service whose scopes its token needs.
_MICROSOFT_SERVICE = {"imap": "mail", "pop3": "mail", "smtp": "mail", "ews": "ews", "graph": "graph"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ConnectionSpec:
    """What an administrator enters (checked by :meth:`checked`); the client secret stays hidden."""

    name: str
    provider: str
    grant: str
    client_id: str
    token_type: str
    protocols: tuple[str, ...]
    client_secret: Secret | None = field(default=None, repr=False)
    tenant: str = ""
    cloud: str = "global"
    authority: str = ""
    authorize_url: str = ""
    token_url: str = ""
    scopes: tuple[str, ...] = ()

    def checked(self) -> ConnectionSpec:
        if not _NAME.match(self.name):
            raise ConfigError(
                "name", f"{self.name!r} is not a usable name", hint="letters, digits and . _ - (no spaces)"
            )
        _choice("provider", self.provider, PROVIDERS)
        _choice("grant", self.grant, GRANTS)
        _choice("token_type", self.token_type, TOKEN_TYPES)
        if not self.client_id.strip():
            raise ConfigError("client_id", "is required", hint="the app registration's application (client) ID")
        if not self.protocols:
            raise ConfigError("protocols", "choose at least one", hint="the protocols the bots will use")
        for protocol in self.protocols:
            _choice("protocols", protocol, PROTOCOLS)
        if self.grant == "client_credentials":
            if self.client_secret is None:
                raise ConfigError("client_secret", "is required for client credentials", hint="the app's client secret")
            if self.token_type != "shared":
                raise ConfigError(
                    "token_type", "client credentials have no user: the token is shared", hint="choose Shared"
                )
            if self.provider == "google":
                raise ConfigError(
                    "grant", "Google has no client-credentials grant for mail", hint="use authorization code"
                )
        if self.provider == "microsoft365":
            _choice("cloud", self.cloud, MICROSOFT_CLOUDS)
            services = {_MICROSOFT_SERVICE[p] for p in self.protocols}
            if len(services) > 1:
                raise ConfigError(
                    "protocols",
                    "a Microsoft token is for one resource: IMAP, POP3 and SMTP together, EWS alone, or Graph alone",
                    hint="make one connection per resource (e.g. contoso-mail and contoso-graph)",
                )
            if not self.tenant.strip() and not self.authority:
                raise ConfigError(
                    "tenant", "is required for Microsoft 365", hint="the directory (tenant) ID in Entra ID"
                )
        if self.provider == "google" and {"ews", "graph"} & set(self.protocols):
            raise ConfigError("protocols", "Google serves IMAP, POP3 and SMTP only", hint="untick EWS and Graph")
        self.endpoints()  # URLs and scopes checked now, before anything is stored
        return self

    @property
    def service(self) -> str:
        return _MICROSOFT_SERVICE[self.protocols[0]] if self.provider == "microsoft365" else "mail"

    def endpoints(self) -> OAuthEndpoints:
        return endpoints_for(
            "gmail" if self.provider == "google" else self.provider,  # type: ignore[arg-type]
            tenant_id=self.tenant.strip() or None,
            azure_cloud=self.cloud,
            authority=self.authority or None,
            authorize_url=self.authorize_url or None,
            token_url=self.token_url or None,
            scopes=self.scopes,
            service=self.service,
        )


@dataclass(frozen=True)
class StoredConnection:
    """A connection as stored: the spec, its id, version and invited roles."""

    id: int
    spec: ConnectionSpec
    version: int
    invited_role_ids: frozenset[int]
    created_by: str | None
    updated_at: float

    @property
    def name(self) -> str:
        return self.spec.name

    def endpoint_for(self, protocol: str) -> Endpoint | None:
        """Where the provider serves ``protocol`` in the connection's cloud, if postroom knows it."""
        spec = self.spec
        if spec.provider == "google":
            return PROVIDER_PRESETS["gmail"].endpoint(protocol) if protocol in ("imap", "pop3", "smtp") else None
        if spec.provider != "microsoft365":
            return None
        cloud = MICROSOFT_CLOUDS[spec.cloud]
        if protocol == "graph":
            return Endpoint(urlsplit(cloud.graph_resource).hostname or "", 443, "ssl")
        preset = {"global": "microsoft365", "gcc-high": "microsoft365-gcc-high"}.get(spec.cloud)
        if preset is None:  # IMAP, POP3, SMTP and EWS are offered in the Global and GCC High clouds only
            return None
        if protocol == "ews":
            return Endpoint(urlsplit(cloud.app_resource).hostname or "", 443, "ssl")
        return PROVIDER_PRESETS[preset].endpoint(protocol)

    def host_for(self, protocol: str) -> str | None:
        """The host a token of this connection is for over ``protocol``, if known."""
        endpoint = self.endpoint_for(protocol)
        return endpoint.host if endpoint else None

    def hosts(self) -> list[str]:
        """Every host a token of this connection is for (what the runner API tells a runner)."""
        return sorted({host for p in self.spec.protocols if (host := self.host_for(p))})

    def client(self, *, ca_file: str | None, relogin: str) -> OAuthClient:
        settings = ClientSettings(
            client_id=Secret(self.spec.client_id, scrub=False),
            client_secret=self.spec.client_secret,
            ca_file=ca_file,
            relogin=relogin,
            client_auth="body" if self.spec.provider == "google" else "basic",
        )
        return make_client(self.spec.endpoints(), settings)


def _choice(name: str, value: str, allowed: Mapping[str, Any]) -> None:
    if value not in allowed:
        raise ConfigError(
            name, f"{value!r} is not one of {', '.join(allowed)}", hint=f"choose one of {', '.join(allowed)}"
        )


#: Built once (building a statement costs more than running it; the runner API runs these on every request).
_BY_NAME = select(connections).where(connections.c.name == bindparam("name"))
_INVITED = select(connection_roles.c.role_id).where(connection_roles.c.connection_id == bindparam("connection_id"))


def _row_to_connection(db: Connection, row: Any, sealer: Sealer) -> StoredConnection:
    invited = frozenset(int(r) for r in db.execute(_INVITED, {"connection_id": row.id}).scalars())
    spec = ConnectionSpec(
        name=row.name,
        provider=row.provider,
        grant=row.grant,
        client_id=row.client_id,
        token_type=row.token_type,
        protocols=tuple(row.protocols.split(",")),
        client_secret=sealer.open(row.client_secret) if row.client_secret else None,
        tenant=row.tenant or "",
        cloud=row.cloud or "global",
        authority=row.authority or "",
        authorize_url=row.authorize_url or "",
        token_url=row.token_url or "",
        scopes=tuple((row.scopes or "").split()),
    )
    return StoredConnection(int(row.id), spec, int(row.version), invited, row.created_by, float(row.updated_at))


def get_connection(db: Connection, sealer: Sealer, name: str) -> StoredConnection | None:
    row = db.execute(_BY_NAME, {"name": name}).first()
    return _row_to_connection(db, row, sealer) if row is not None else None


def list_connections(db: Connection, sealer: Sealer) -> list[StoredConnection]:
    rows = db.execute(select(connections).order_by(connections.c.name)).all()
    return [_row_to_connection(db, row, sealer) for row in rows]


def save_connection(
    db: Connection,
    sealer: Sealer,
    spec: ConnectionSpec,
    *,
    invited_role_ids: Iterable[int],
    actor: Actor,
    existing: StoredConnection | None = None,
    expected_version: int | None = None,
) -> StoredConnection:
    """Create ``spec``, or change ``existing`` to it (refused when someone changed it since ``expected_version``).
    A new client secret left empty on edit keeps the stored one."""
    spec = spec.checked()
    now = time.time()
    values: dict[str, Any] = {
        "name": spec.name,
        "provider": spec.provider,
        "tenant": spec.tenant.strip() or None,
        "cloud": spec.cloud if spec.provider == "microsoft365" else None,
        "authority": spec.authority or None,
        "authorize_url": spec.authorize_url or None,
        "token_url": spec.token_url or None,
        "scopes": " ".join(spec.scopes) or None,
        "grant": spec.grant,
        "client_id": spec.client_id.strip(),
        "token_type": spec.token_type,
        "protocols": ",".join(spec.protocols),
        "updated_at": now,
    }
    if spec.client_secret is not None:
        values["client_secret"] = sealer.seal(spec.client_secret)
    if existing is None:
        if db.execute(select(connections.c.id).where(connections.c.name == spec.name)).scalar() is not None:
            raise ConfigError("name", f"a connection {spec.name!r} exists already", hint="choose another name")
        connection_id = db.execute(
            connections.insert().values(**values, created_by=actor.name, created_at=now, version=1)
        ).inserted_primary_key[0]  # type: ignore[index]
        action = "connection.create"
    else:
        connection_id = existing.id
        changed = db.execute(
            connections.update()
            .where(connections.c.id == existing.id, connections.c.version == (expected_version or existing.version))
            .values(**values, version=connections.c.version + 1)
        )
        if changed.rowcount != 1:
            raise ConfigError(
                "version", "someone else changed this connection meanwhile", hint="open it again and redo your change"
            )
        action = "connection.update"
    ids = sorted(set(invited_role_ids))
    db.execute(delete(connection_roles).where(connection_roles.c.connection_id == connection_id))
    if ids:
        db.execute(connection_roles.insert(), [{"connection_id": connection_id, "role_id": r} for r in ids])
    invited = db.execute(select(roles.c.name).where(roles.c.id.in_(ids))).scalars().all()
    record(
        db,
        actor,
        action,
        connection=spec.name,
        detail=f"provider {spec.provider}, grant {spec.grant}, token {spec.token_type}, "
        f"protocols {','.join(spec.protocols)}, invited: {', '.join(sorted(invited)) or 'nobody'}"
        + (", client secret changed" if spec.client_secret is not None and existing is not None else ""),
    )
    found = get_connection(db, sealer, spec.name)
    assert found is not None
    return found


def delete_connection(db: Connection, connection: StoredConnection, *, actor: Actor) -> None:
    db.execute(delete(connections).where(connections.c.id == connection.id))
    record(db, actor, "connection.delete", connection=connection.name)
