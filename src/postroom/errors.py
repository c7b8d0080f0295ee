"""postroom's errors: one tree, one root.

Every error a user can see is a :class:`PostroomError`. Foreign exceptions
(``socket``, ``ssl``, ``imaplib``, ``poplib``, ...) are mapped into this tree once,
at the transport boundary (:mod:`postroom.transports.errors`), so callers never
catch a library's exception.

::

    PostroomError
    ├── ConfigError                  a setting is invalid (names the field and the fix)
    ├── CredentialError              a secret could not be resolved
    │   └── VaultError               the local credential vault
    │       └── VaultLockedError     the vault key is missing or wrong
    ├── SessionError                 named-session bookkeeping
    │   ├── SessionNotFoundError     no open session by that name
    │   └── SessionExistsError       the name is taken (use replace=True)
    ├── MailServerError              talking to a server failed
    │   ├── ServerUnreachableError   DNS, refused, network down
    │   ├── ServerTimeoutError       no answer in time
    │   ├── TLSError                 handshake failed
    │   │   ├── CertificateError     certificate not trusted / wrong host name
    │   │   └── StartTLSError        STARTTLS/STLS not offered or failed (never a downgrade)
    │   ├── AuthenticationError      the server refused the login
    │   ├── ConnectionLostError      the server dropped an established connection
    │   └── ProtocolError            the server answered something unexpected
    ├── OAuthError                   the OAuth2 authorization server refused or failed
    │   ├── ConsentRequiredError     no usable token: sign in (again) to give consent
    │   └── AuthorizationDeniedError the browser sign-in was denied, forged or timed out
    └── UnsupportedError             the server or protocol cannot do what was asked
        └── MissingExtraError        an optional part of postroom is not installed (names the pip line)

Every message says what failed, where (session and server), and what to try.
Secret values never appear in messages: :func:`postroom.credentials.redact`
scrubs them before an error is built.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "AuthorizationDeniedError",
    "CertificateError",
    "ConfigError",
    "ConnectionLostError",
    "ConsentRequiredError",
    "CredentialError",
    "DeliveryUnknownError",
    "MailServerError",
    "MissingExtraError",
    "OAuthError",
    "PostroomError",
    "PostroomWarning",
    "ProtocolError",
    "RecipientsRefusedError",
    "ServerBusyError",
    "ServerTimeoutError",
    "ServerUnreachableError",
    "SessionError",
    "SessionExistsError",
    "SessionNotFoundError",
    "StartTLSError",
    "TLSError",
    "UnsupportedError",
    "VaultError",
    "VaultLockedError",
]


class PostroomError(Exception):
    """Root of every error postroom raises.

    ``problem`` says what went wrong, ``hint`` what to try; ``session`` and
    ``server`` say where. ``str(error)`` joins them into one line.
    """

    #: Process exit code the CLI uses for this kind of error.
    exit_code = 1

    def __init__(
        self,
        problem: str,
        *,
        hint: str | None = None,
        session: str | None = None,
        server: str | None = None,
    ) -> None:
        self.problem = problem
        self.hint = hint
        self.session = session
        self.server = server
        super().__init__(problem)

    def with_context(self, *, session: str | None = None, server: str | None = None) -> PostroomError:
        """Fill in where the error happened, if not known yet; returns self."""
        if session and not self.session:
            self.session = session
        if server and not self.server:
            self.server = server
        return self

    def __str__(self) -> str:
        where = []
        if self.session:
            where.append(f"session {self.session!r}")
        if self.server:
            where.append(self.server)
        text = f"{' '.join(where)}: {self.problem}" if where else self.problem
        if self.hint:
            text = f"{text} — {self.hint}"
        return text

    def to_dict(self) -> dict[str, str | None]:
        """A JSON-ready view, for ``--json`` output."""
        return {
            "type": type(self).__name__,
            "message": str(self),
            "problem": self.problem,
            "hint": self.hint,
            "session": self.session,
            "server": self.server,
            "field": None,  # the setting at fault, for a ConfigError
        }


class ConfigError(PostroomError, ValueError):
    """A setting is invalid. ``field`` names it."""

    exit_code = 3

    def __init__(self, field: str, problem: str, *, hint: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}", hint=hint)

    def to_dict(self) -> dict[str, str | None]:
        return {**super().to_dict(), "field": self.field}


class CredentialError(PostroomError):
    """A secret could not be resolved from its source."""

    exit_code = 4


class VaultError(CredentialError):
    """The local credential vault could not be read or written."""


class VaultLockedError(VaultError):
    """The vault's key is missing or does not open the vault."""


class SessionError(PostroomError):
    """Named-session bookkeeping failed."""

    exit_code = 5


class SessionNotFoundError(SessionError, KeyError):
    """No open session has that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return PostroomError.__str__(self)


class SessionExistsError(SessionError):
    """A session with that name is already open."""


class MailServerError(PostroomError):
    """Talking to a mail server failed."""

    exit_code = 6


class ServerUnreachableError(MailServerError):
    """The server could not be reached: unknown host, refused, network down."""


class ServerBusyError(MailServerError):
    """The server refused for now, not for good: a POP3 ``[LOGIN-DELAY]``, ``[IN-USE]`` or ``[SYS/TEMP]``.

    ``retry_after`` is the number of seconds to wait, when the server said."""

    def __init__(self, problem: str, *, retry_after: float | None = None, **context: str | None) -> None:
        super().__init__(problem, **context)
        self.retry_after = retry_after


class RecipientsRefusedError(MailServerError):
    """The server refused every recipient (unknown user, relaying denied): nothing was sent, and sending
    again unchanged fails again. A setting to fix, not a network to retry: exit code 3."""

    exit_code = 3


class DeliveryUnknownError(MailServerError):
    """The connection dropped after the message was handed over: it may have been delivered.

    Do not send it again blindly: check the recipient's mailbox or the server's log first."""

    exit_code = 9


class ServerTimeoutError(MailServerError, TimeoutError):
    """The server did not answer in time."""


class TLSError(MailServerError):
    """The TLS handshake failed."""


class CertificateError(TLSError):
    """The server's certificate is not trusted or is for another host name."""


class StartTLSError(TLSError):
    """STARTTLS/STLS was asked for but is not offered or failed. postroom never falls back to plaintext."""


class AuthenticationError(MailServerError):
    """The server refused the login.

    For OAuth2 logins, ``token_rejected`` is True when the server turned the access
    token down (the session then refreshes it once and tries again), and
    ``sasl_status`` holds the status the server sent in its error challenge
    (``"401"``, ``"invalid_token"``, ``"insufficient_scope"``...), if any.
    """

    exit_code = 7

    def __init__(
        self,
        problem: str,
        *,
        hint: str | None = None,
        token_rejected: bool = False,
        sasl_status: str | None = None,
        **where: str | None,
    ) -> None:
        super().__init__(problem, hint=hint, **where)
        self.token_rejected = token_rejected
        self.sasl_status = sasl_status


class ConnectionLostError(MailServerError):
    """An established connection was dropped by the server or the network.

    ``progress`` is True when the interrupted operation kept what it had done before the drop
    (a loop keeps the messages it had read), so repeating it goes further than the last try."""

    progress = False


class ProtocolError(MailServerError):
    """The server answered something postroom did not expect."""


class OAuthError(PostroomError):
    """The OAuth2 authorization server refused a request or could not be reached.

    ``error`` is the OAuth2 error code (``invalid_client``, ``invalid_grant``...) when
    the server sent one.
    """

    exit_code = 7

    def __init__(self, problem: str, *, hint: str | None = None, error: str | None = None, **where: str | None) -> None:
        super().__init__(problem, hint=hint, **where)
        self.error = error


class ConsentRequiredError(OAuthError):
    """No usable token: never signed in, or the refresh token expired or was revoked."""


class AuthorizationDeniedError(OAuthError):
    """The browser sign-in did not complete: denied, forged (state mismatch) or timed out."""


class UnsupportedError(PostroomError):
    """The server or protocol cannot do what was asked (checked before touching the server)."""

    exit_code = 8


class PostroomWarning(UserWarning):
    """Base of postroom's warnings: allowed, but risky (plaintext, unverified TLS, typed-in secrets)."""


class MissingExtraError(UnsupportedError):
    """A feature needs an optional part of postroom that is not installed; the hint is the exact pip line."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the {extra!r} extra of postroom ({module} is not installed)",
            hint=f"pip install 'postroom[{extra}]'",
        )
        self.extra = extra
        self.module = module
