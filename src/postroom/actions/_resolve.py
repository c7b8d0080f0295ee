"""Finding the session an action runs on, and checking what it can do before touching the server."""

from __future__ import annotations

from postroom.errors import UnsupportedError
from postroom.session import Session, get_session
from postroom.transports.base import Features

__all__ = ["SessionRef", "require", "resolve"]

SessionRef = str | Session


def resolve(session: SessionRef) -> Session:
    """The open session named ``session`` (or the session itself)."""
    return session if isinstance(session, Session) else get_session(session)


def require(session: Session, feature: str, what: str) -> None:
    """Refuse, before any command is sent, an action the session's protocol cannot do."""
    features: Features = session.features
    if not getattr(features, feature):
        protocol = session.config.protocol.upper()
        raise UnsupportedError(
            f"{what} is not possible on {protocol}: it has no {'folders' if feature != 'flags' else 'read status'}",
            hint="connect with protocol='imap' for folders, read status and moves; nothing was sent to the server",
            session=session.name,
            server=session.server,
        )
