"""*Test connection*: connect, log in, report what the server offers, disconnect."""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from postroom.config import EmailServer, ServerConfig
from postroom.config.smtp_server import SmtpServer
from postroom.credentials import CredentialVault
from postroom.errors import PostroomError
from postroom.session import current_runtime
from postroom.session.session import Session
from postroom.transports import ServerReport
from postroom.transports.smtp import SmtpCheck, check_submission

__all__ = ["ConnectionTest", "test_connection"]

_ROUND_TRIPS = 3


@dataclass(frozen=True)
class ConnectionTest:
    """The result of :func:`test_connection`. Times are in milliseconds."""

    report: ServerReport
    #: Who logged in (usernames are identities, not keys: shown, unlike passwords).
    username: str
    #: Where the username came from (``vault:...``, ``var:...``).
    username_source: str
    connect_ms: float
    round_trip_ms: float
    #: The SMTP server the settings name, logged in to as sending would (None: none is set, or it failed).
    smtp: SmtpCheck | None = None
    #: Why the SMTP login failed, when it did: reading still works, sending would not.
    smtp_error: PostroomError | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self.report)
        data["capabilities"] = list(self.report.capabilities)
        data.update(
            username=self.username,
            username_source=self.username_source,
            connect_ms=self.connect_ms,
            round_trip_ms=self.round_trip_ms,
            smtp={**asdict(self.smtp), "extensions": list(self.smtp.extensions)} if self.smtp else None,
            smtp_error=self.smtp_error.to_dict() if self.smtp_error else None,
        )
        return data


def test_connection(
    config: ServerConfig,
    *,
    name: str = "test-connection",
    variables: Mapping[str, str] | None = None,
    vault: CredentialVault | None = None,
) -> ConnectionTest:
    """Connect and log in to ``config``'s server, describe it, and disconnect; log in to its SMTP server
    too when the settings name one (``smtp_host`` or a provider), sending nothing.

    Raises the same :class:`~postroom.errors.PostroomError` a real session would,
    so a failed test says exactly what a bot would meet.
    """
    session = Session(name, config, current_runtime().context_for(name, variables=variables, vault=vault))
    started = time.perf_counter()
    session.open()
    connect_ms = (time.perf_counter() - started) * 1000
    try:
        login = session.resolve_login()
        username = login.username.reveal()
        report = session.call(lambda mailbox: mailbox.report())
        samples = []
        for _ in range(_ROUND_TRIPS):
            tick = time.perf_counter()
            session.call(lambda mailbox: mailbox.noop())
            samples.append((time.perf_counter() - tick) * 1000)
        smtp = smtp_error = None
        if isinstance(config, EmailServer) and config.smtp is not None:
            try:
                smtp = check_submission(SmtpServer.for_session(config), login)
            except PostroomError as failed:  # the mailbox works; only sending would fail: said, not raised
                smtp_error = failed
    finally:
        session.close()
    return ConnectionTest(
        report=report,
        username=username,
        username_source=config.auth.describe().get("username") or config.auth.kind,
        connect_ms=round(connect_ms, 2),
        round_trip_ms=round(statistics.median(samples), 2),
        smtp=smtp,
        smtp_error=smtp_error,
    )


test_connection.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name
