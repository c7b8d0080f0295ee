"""Foreign exceptions → postroom's error tree, in one place.

Each transport runs its network work inside :func:`mapped_errors`, telling it the
*stage* it is in (connecting, TLS handshake, waiting for the greeting, STARTTLS,
login, or a command). The stage decides the message and the hint: a timeout while
connecting means a firewall or a wrong host, while waiting for the greeting it
usually means the wrong security mode for the port.
"""

from __future__ import annotations

import imaplib
import poplib
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from postroom.config import EmailServer
from postroom.config.smtp_server import SmtpServer
from postroom.credentials import redact
from postroom.errors import (
    AuthenticationError,
    CertificateError,
    ConnectionLostError,
    MailServerError,
    PostroomError,
    ProtocolError,
    ServerBusyError,
    ServerTimeoutError,
    ServerUnreachableError,
    StartTLSError,
    TLSError,
)

__all__ = ["Stage", "StageTracker", "mapped_errors", "server_text", "tracker_for"]

Stage = Literal["connect", "tls", "greeting", "starttls", "login", "command"]


@dataclass
class StageTracker:
    """Where a connection is; transports update it as they go."""

    address: str
    host: str
    port: int
    security: str
    connect_timeout: float
    read_timeout: float
    stage: Stage = "connect"


def tracker_for(config: EmailServer | SmtpServer) -> StageTracker:
    """A fresh tracker for a connection to ``config``'s server."""
    assert config.host is not None and config.port is not None and config.security is not None
    return StageTracker(
        address=config.address,
        host=config.host,
        port=config.port,
        security=config.security,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
    )


def server_text(value: object) -> str:
    """A server reply as clean one-line text, secrets scrubbed."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, list | tuple):
        value = " ".join(server_text(v) for v in value)
    text = " ".join(str(value).split())
    return redact(text)[:300]


_PLAIN_PORT_HINT = {
    "imap": "this port seems to expect plaintext or STARTTLS: use security='starttls' (usually port 143) "
    "or port 993 for implicit TLS",
    "pop3": "this port seems to expect plaintext or STLS: use security='starttls' (usually port 110) "
    "or port 995 for implicit TLS",
    "smtp": "this port seems to expect plaintext or STARTTLS: use security='starttls' (usually port 587) "
    "or port 465 for implicit TLS",
}


#: The hint of a lost connection: what the session does next (see postroom.session.retry).
_RECONNECTS = (
    "the session reconnects as its reconnect policy says and repeats what is safe to repeat; "
    "if this keeps happening, check the network path, server limits and idle timeouts"
)


@contextmanager
def mapped_errors(where: StageTracker, protocol: str) -> Iterator[None]:
    """Run network work; re-raise anything foreign as the matching :class:`PostroomError`."""
    try:
        yield
    except PostroomError as exc:
        raise exc.with_context(server=where.address) from None
    except Exception as exc:
        mapped = _map(exc, where, protocol)
        if mapped is None:
            raise
        raise mapped.with_context(server=where.address) from exc


def _map(exc: BaseException, where: StageTracker, protocol: str) -> MailServerError | None:
    stage = where.stage
    port = where.port
    if isinstance(exc, socket.gaierror):
        return ServerUnreachableError(
            f"cannot resolve the host name {where.host!r} ({exc.strerror or exc})",
            hint="check the spelling of the host, your DNS, or whether a VPN is needed",
        )
    if isinstance(exc, ConnectionRefusedError):
        return ServerUnreachableError(
            f"connection refused on port {port}",
            hint="check that the server is running and the port is right "
            "(IMAP 993 ssl / 143 starttls, POP3 995 ssl / 110 starttls)",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _certificate_error(exc, where)
    if isinstance(exc, TimeoutError | socket.timeout):
        return _timeout_error(where, protocol)
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        if stage in {"login", "command"}:  # long after the handshake: the peer went away mid-session
            return ConnectionLostError(
                f"the server closed the TLS connection ({reason})",
                hint=_RECONNECTS,
            )
        if reason in {"WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE"} and (
            stage == "tls"
        ):
            return TLSError(f"the server did not speak TLS on port {port} ({reason})", hint=_PLAIN_PORT_HINT[protocol])
        error_type = StartTLSError if stage == "starttls" else TLSError
        return error_type(
            f"TLS handshake failed: {reason}", hint="check the security setting and the server's TLS setup"
        )
    if isinstance(
        exc, imaplib.IMAP4.abort | EOFError | ConnectionResetError | BrokenPipeError | smtplib.SMTPServerDisconnected
    ):
        if stage in {"connect", "tls", "greeting"}:
            return ServerUnreachableError(
                f"the server closed the connection before greeting ({server_text(exc) or type(exc).__name__})",
                hint=_PLAIN_PORT_HINT.get(protocol) if where.security == "ssl" else "check the port and security",
            )
        return ConnectionLostError(
            f"the server closed the connection ({server_text(exc) or type(exc).__name__})",
            hint=_RECONNECTS,
        )
    if isinstance(exc, imaplib.IMAP4.error | poplib.error_proto | smtplib.SMTPException):
        text = server_text(exc.args[0] if exc.args else exc)
        if stage == "command" and isinstance(exc, poplib.error_proto) and _pop3_connection_gone(text):
            return ConnectionLostError(f"the server closed the connection ({text})", hint=_RECONNECTS)
        if protocol == "pop3" and stage in {"login", "command"}:
            coded = _pop3_response_code(text, where, getattr(exc, "login_delay", None))
            if coded is not None:
                return coded
        if stage == "login":
            return AuthenticationError(
                f"login refused: {text}",
                hint="check the username and password and where they come from (vault entry or variable); "
                "Microsoft 365 and Google Workspace accept only OAuth2",
            )
        if stage == "starttls":
            return StartTLSError(
                f"STARTTLS failed: {text}",
                hint="postroom never falls back to plaintext; use security='ssl' on the implicit-TLS port "
                "or ask the server's admin to enable STARTTLS",
            )
        return ProtocolError(f"unexpected server reply: {text}")
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError) and stage == "command":
        return ProtocolError(
            f"could not read the server's reply ({exc})",
            hint="the connection was closed; postroom reconnects on next use. Please report the server's name",
        )
    if isinstance(exc, OSError):
        if stage == "command":
            return ConnectionLostError(
                f"the connection broke ({exc.strerror or type(exc).__name__})",
                hint=_RECONNECTS,
            )
        detail = exc.strerror or str(exc) or type(exc).__name__
        return ServerUnreachableError(f"network error: {detail}", hint="check the network path to the server")
    return None


_POP3_CODE = re.compile(r"^-ERR \[([A-Z0-9/-]+)\]", re.IGNORECASE)


def _pop3_response_code(text: str, where: StageTracker, delay: int | None) -> MailServerError | None:
    """The error for a POP3 ``-ERR [CODE]`` reply (RFC 2449 §8, RFC 3206), or None for an uncoded one."""
    match = _POP3_CODE.match(text)
    code = match.group(1).upper() if match else None
    if code == "LOGIN-DELAY":
        when = f"wait {delay} s" if delay else "wait (the server did not say how long)"
        return ServerBusyError(
            f"the server allows logins only so often: {text}",
            hint=f"{when}, then connect again; another client may be polling this mailbox too",
            retry_after=delay,
        )
    if code == "IN-USE":
        return ServerBusyError(
            f"the mailbox is in use by another POP3 session: {text}",
            hint="POP3 locks the mailbox: close the other client (or wait for it to end), then connect again",
        )
    if code == "SYS/TEMP":
        return ServerBusyError(f"the server has a temporary problem: {text}", hint="try again in a few minutes")
    if code == "SYS/PERM":
        return MailServerError(
            f"the server has a lasting problem with this mailbox: {text}",
            hint="retrying will not help: ask the mail server's administrator",
        )
    if code == "AUTH":
        plaintext = where.security == "none"
        return AuthenticationError(
            f"login refused: {text}",
            hint="the server accepts no password on an unencrypted connection: use security='ssl' (port 995) "
            "or 'starttls'"
            if plaintext
            else "check the username and password and where they come from (vault entry or variable)",
        )
    return None


def _pop3_connection_gone(text: str) -> bool:
    """poplib reports a closed socket as ``-ERR EOF``; a server going away says ``[SYS/TEMP]`` (RFC 3206)."""
    return text.startswith("-ERR EOF") or "[SYS/TEMP]" in text


def _certificate_error(exc: ssl.SSLCertVerificationError, where: StageTracker) -> CertificateError:
    message = exc.verify_message or str(exc.reason or exc)
    lowered = message.lower()
    if "mismatch" in lowered or "doesn't match" in lowered or "not valid for" in lowered:
        return CertificateError(
            f"the server's certificate is not valid for {where.host!r} ({message})",
            hint="connect with a host name listed in the certificate, or have the certificate reissued",
        )
    return CertificateError(
        f"the server's certificate is not trusted ({message})",
        hint="give the CA certificate that signed it (ca_file= / --ca-file), or install that CA in the "
        "system trust store; verification is never skipped silently",
    )


def _timeout_error(where: StageTracker, protocol: str) -> ServerTimeoutError:
    stage = where.stage
    if stage == "connect":
        return ServerTimeoutError(
            f"no connection within {where.connect_timeout:g} s",
            hint="a firewall may be dropping the traffic; check the host, the port and any VPN",
        )
    if stage == "tls":
        return ServerTimeoutError(
            f"the TLS handshake got no answer within {where.connect_timeout:g} s",
            hint=_PLAIN_PORT_HINT[protocol],
        )
    if stage == "greeting":
        hint = (
            "the server accepted the connection but said nothing: if this port expects implicit TLS, use security='ssl'"
            if where.security != "ssl"
            else "the server accepted the connection but said nothing after TLS"
        )
        return ServerTimeoutError(f"no greeting from the server within {where.read_timeout:g} s", hint=hint)
    return ServerTimeoutError(
        f"the server did not answer within {where.read_timeout:g} s ({stage})",
        hint="raise read_timeout for slow servers or large messages",
    )
