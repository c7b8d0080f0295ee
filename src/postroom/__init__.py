"""postroom: email automation for bots.

Open a named session, then act on it by name::

    import postroom
    from postroom import Basic, EmailServer, Vault

    postroom.connect("invoices", EmailServer(host="imap.example.com",
                     auth=Basic(username="bot@example.com", password=Vault("mail", "password"))))
    ...
    postroom.disconnect("invoices")
"""

from __future__ import annotations

import logging

from postroom.actions import ConnectionTest, test_connection
from postroom.auth import AuthMode, Basic
from postroom.config import PROVIDERS, EmailServer, PlaintextWarning, UnverifiedTLSWarning
from postroom.credentials import (
    CredentialVault,
    Insecure,
    InsecureSecretWarning,
    Secret,
    Variable,
    Vault,
    redact,
)
from postroom.errors import (
    AuthenticationError,
    CertificateError,
    ConfigError,
    ConnectionLostError,
    CredentialError,
    MailServerError,
    PostroomError,
    PostroomWarning,
    ProtocolError,
    ServerTimeoutError,
    ServerUnreachableError,
    SessionError,
    SessionExistsError,
    SessionNotFoundError,
    StartTLSError,
    TLSError,
    UnsupportedError,
    VaultError,
    VaultLockedError,
)
from postroom.logs import RedactingFilter, get_logger
from postroom.session import Session, connect, disconnect, disconnect_all, get_session, open_sessions
from postroom.transports import ServerReport

__version__ = "0.1.0"

__all__ = [
    "PROVIDERS",
    "AuthMode",
    "AuthenticationError",
    "Basic",
    "CertificateError",
    "ConfigError",
    "ConnectionLostError",
    "ConnectionTest",
    "CredentialError",
    "CredentialVault",
    "EmailServer",
    "Insecure",
    "InsecureSecretWarning",
    "MailServerError",
    "PlaintextWarning",
    "PostroomError",
    "PostroomWarning",
    "ProtocolError",
    "RedactingFilter",
    "Secret",
    "ServerReport",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "Session",
    "SessionError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StartTLSError",
    "TLSError",
    "UnsupportedError",
    "UnverifiedTLSWarning",
    "Variable",
    "Vault",
    "VaultError",
    "VaultLockedError",
    "__version__",
    "connect",
    "disconnect",
    "disconnect_all",
    "get_session",
    "open_sessions",
    "redact",
    "test_connection",
]

get_logger("postroom").addHandler(logging.NullHandler())
