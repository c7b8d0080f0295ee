"""Signing in to a connection from the web UI: begin (the URL to send the browser to), then the callback.

``state`` is a random nonce signed by the service; the nonce's row holds what completing needs (the
PKCE verifier, MSAL's flow; sealed), who started it and in which web session, and expires after five
minutes. The callback takes the row once (a replay finds nothing), checks the signature, the expiry
and that the signed-in web user and session are the ones that started it, then redeems the code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from sqlalchemy import Connection, delete, select

from postroom.auth.oauth.clients import AuthorizationRequest, OAuthClient
from postroom.auth.oauth.tokens import TokenRecord
from postroom.errors import AuthorizationDeniedError, PostroomError
from postroom.server.accounts import WebSession
from postroom.server.audit import Actor, record
from postroom.server.connections import StoredConnection
from postroom.server.sealing import Sealer, random_token
from postroom.server.store.database import ServerDatabase
from postroom.server.store.tables import sign_ins
from postroom.server.tokens import Tokens

__all__ = ["STATE_SECONDS", "begin", "complete"]

STATE_SECONDS = 300.0


def begin(
    database: ServerDatabase,
    sealer: Sealer,
    connection: StoredConnection,
    client: OAuthClient,
    *,
    principal: str,
    session: WebSession,
    redirect_uri: str,
    ip: str | None,
) -> str:
    """Start a sign-in; the authorization URL to send the browser to."""
    nonce = random_token()
    state = sealer.sign(nonce)
    request = client.begin(redirect_uri, state, None)  # may ask the provider (tenant discovery): outside a transaction
    now = time.time()
    private = json.dumps({"redirect_uri": request.redirect_uri, "private": request.private})
    with database.tx() as db:
        db.execute(delete(sign_ins).where(sign_ins.c.expires_at < now))
        db.execute(
            sign_ins.insert().values(
                nonce=nonce,
                connection_id=connection.id,
                principal=principal,
                user_id=session.user.id,
                session_id=session.id,
                private=sealer.seal(private),
                created_at=now,
                expires_at=now + STATE_SECONDS,
            )
        )
        record(
            db, Actor("user", session.user.name, ip), "sign_in.begin", connection=connection.name, principal=principal
        )
    return request.url


def pending_connection(db: Connection, sealer: Sealer, state: str) -> int | None:
    """The connection a callback's ``state`` is for (None when the state is not one this service signed,
    or was used already)."""
    nonce = sealer.signed_value(state)
    if nonce is None:
        return None
    found = db.execute(select(sign_ins.c.connection_id).where(sign_ins.c.nonce == nonce)).scalar()
    return int(found) if found is not None else None


def complete(
    database: ServerDatabase,
    sealer: Sealer,
    tokens: Tokens,
    connection: StoredConnection,
    client: OAuthClient,
    callback: Mapping[str, str],
    *,
    session: WebSession,
    ip: str | None,
) -> tuple[str, TokenRecord]:
    """Finish a sign-in from the callback's parameters; (principal, the tokens stored).

    The state is taken first, in a transaction of its own: refused or not, it is never good again.
    """
    actor = Actor("user", session.user.name, ip)
    state = str(callback.get("state", ""))
    nonce = sealer.signed_value(state)

    def refuse(why: str) -> AuthorizationDeniedError:
        with database.tx() as db:
            record(db, actor, "sign_in.callback", outcome="refused", connection=connection.name, detail=why)
        return AuthorizationDeniedError(f"the sign-in was refused: {why}", hint="start the sign-in again")

    if nonce is None:
        raise refuse("its state was not issued by this service")
    with database.tx() as db:
        row = db.execute(delete(sign_ins).where(sign_ins.c.nonce == nonce).returning(*sign_ins.c)).first()
    if row is None:
        raise refuse("its state was used already or is unknown")
    if row.expires_at < time.time():
        raise refuse("it took longer than five minutes")
    if row.user_id != session.user.id or row.session_id != session.id:
        raise refuse("it was started by another user or in another browser session")
    if row.connection_id != connection.id:
        raise refuse("it belongs to another connection")
    if "error" in callback:
        why = str(callback.get("error_description") or callback.get("error"))[:300]
        raise refuse(f"the identity provider said: {why}")
    if not callback.get("code"):
        raise refuse("the callback carries no code")
    saved = json.loads(sealer.open(row.private).reveal())
    request = AuthorizationRequest("", state, saved["redirect_uri"], saved["private"])
    try:
        response = client.redeem(request, dict(callback))
    except PostroomError as failed:
        raise refuse(f"redeeming the code failed: {failed}") from None
    with database.tx() as db:
        stored = tokens.store_sign_in(db, connection, row.principal, response, by=session.user.name)
        record(
            db,
            actor,
            "sign_in.complete",
            connection=connection.name,
            principal=row.principal,
            detail=f"signed in as {stored.account}" if stored.account else None,
        )
    return row.principal, stored
