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

from postroom.actions import (
    ConnectionTest,
    SavedFile,
    add_flags,
    create_folder,
    delete,
    delete_folder,
    flag,
    folders,
    mark_read,
    mark_unread,
    messages,
    move,
    move_all,
    remove_flags,
    rename_folder,
    save_attachments,
    save_email,
    test_connection,
    unflag,
)
from postroom.actions.loop import MessageLoop, get_message
from postroom.actions.send import CopyAfterSendError, SendReceipt, SendResult, forward, reply, send, send_each
from postroom.auth import AuthMode, Basic, Ntlm, OAuth2ClientCredentials, OAuth2Implicit, OAuth2PKCE, OAuth2ROPC
from postroom.auth.oauth.modes import ImplicitGrantWarning, RopcWarning
from postroom.config import (
    PROVIDERS,
    EmailServer,
    Ews,
    EwsRetirementWarning,
    Outlook,
    PlaintextWarning,
    UnverifiedTLSWarning,
)
from postroom.config.smtp_server import SmtpServer
from postroom.credentials import (
    CredentialVault,
    Insecure,
    InsecureSecretWarning,
    Plain,
    Secret,
    Variable,
    Vault,
    redact,
)
from postroom.errors import (
    AuthenticationError,
    AuthorizationDeniedError,
    CertificateError,
    ConfigError,
    ConnectionLostError,
    ConsentRequiredError,
    CredentialError,
    DeliveryUnknownError,
    MailServerError,
    MissingExtraError,
    OAuthError,
    PostroomError,
    PostroomWarning,
    ProtocolError,
    RecipientsRefusedError,
    ServerBusyError,
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
from postroom.filters import MessageFilter
from postroom.logs import RedactingFilter, get_logger
from postroom.message.keys import MessageKey
from postroom.message.model import PROPERTY_KEYS, Address, Message, MessageProperties
from postroom.session import (
    ReconnectPolicy,
    Runtime,
    Session,
    connect,
    disconnect,
    disconnect_all,
    get_session,
    open_sessions,
)
from postroom.transports import Folder, ItemResult, ItemStatus, ServerReport

__version__ = "0.1.0"

__all__ = [
    "PROPERTY_KEYS",
    "PROVIDERS",
    "Address",
    "AuthMode",
    "AuthenticationError",
    "AuthorizationDeniedError",
    "Basic",
    "CertificateError",
    "ConfigError",
    "ConnectionLostError",
    "ConnectionTest",
    "ConsentRequiredError",
    "CopyAfterSendError",
    "CredentialError",
    "CredentialVault",
    "DeliveryUnknownError",
    "EmailServer",
    "Ews",
    "EwsRetirementWarning",
    "Folder",
    "ImplicitGrantWarning",
    "Insecure",
    "InsecureSecretWarning",
    "ItemResult",
    "ItemStatus",
    "MailServerError",
    "Message",
    "MessageFilter",
    "MessageKey",
    "MessageLoop",
    "MessageProperties",
    "MissingExtraError",
    "Ntlm",
    "OAuth2ClientCredentials",
    "OAuth2Implicit",
    "OAuth2PKCE",
    "OAuth2ROPC",
    "OAuthError",
    "Outlook",
    "Plain",
    "PlaintextWarning",
    "PostroomError",
    "PostroomWarning",
    "ProtocolError",
    "RecipientsRefusedError",
    "ReconnectPolicy",
    "RedactingFilter",
    "RopcWarning",
    "Runtime",
    "SavedFile",
    "Secret",
    "SendReceipt",
    "SendResult",
    "ServerBusyError",
    "ServerReport",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "Session",
    "SessionError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SmtpServer",
    "StartTLSError",
    "TLSError",
    "UnsupportedError",
    "UnverifiedTLSWarning",
    "Variable",
    "Vault",
    "VaultError",
    "VaultLockedError",
    "__version__",
    "add_flags",
    "connect",
    "create_folder",
    "delete",
    "delete_folder",
    "disconnect",
    "disconnect_all",
    "flag",
    "folders",
    "forward",
    "get_message",
    "get_session",
    "mark_read",
    "mark_unread",
    "messages",
    "move",
    "move_all",
    "open_sessions",
    "redact",
    "remove_flags",
    "rename_folder",
    "reply",
    "save_attachments",
    "save_email",
    "send",
    "send_each",
    "test_connection",
    "unflag",
]

get_logger("postroom").addHandler(logging.NullHandler())
