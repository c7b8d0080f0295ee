"""Named sessions: connect, find by name, disconnect."""

from postroom.session.registry import connect, disconnect, disconnect_all, get_session, open_sessions
from postroom.session.session import Session, SessionState

__all__ = ["Session", "SessionState", "connect", "disconnect", "disconnect_all", "get_session", "open_sessions"]
