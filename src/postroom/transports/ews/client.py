"""exchangelib, set up for one postroom connection: credentials, TLS, timeouts, throttling, errors.

Nothing of exchangelib is patched process-wide. Each connection gives its own
protocol object (exchangelib's ``Protocol``, built before the ``Account`` so that no
request goes out without it) a ``create_session`` that mounts the connection's own
HTTP adapter on the EWS URL, so two connections never share settings:

- the adapter verifies TLS against the connection's ``ca_file`` (or not at all
  when ``verify_certificate=False``) and applies its timeouts;
- every reply's bytes go through :func:`~postroom.transports.ews.xml.sanitize_stream`
  before lxml sees them (XML-invalid characters never break a loop).

exchangelib caches protocol objects (and failures) per URL and credentials; a
connection evicts its own when it closes, so a bot's reconnect starts afresh. The
only process-wide addition is a logging filter on exchangelib's loggers, which hides
the Authorization header they print at DEBUG.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import requests.adapters
from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    OAUTH2,
    Account,
    Configuration,
    Credentials,
    FailFast,
    FaultTolerance,
    Identity,
    Version,
)
from exchangelib import errors as ews_errors
from exchangelib.credentials import OAuth2AuthorizationCodeCredentials
from exchangelib.protocol import Protocol
from exchangelib.version import VERSIONS
from oauthlib.oauth2 import OAuth2Token

from postroom.auth.base import Login, PasswordLogin, TokenLogin
from postroom.config.ews import Ews
from postroom.credentials import Secret, redact
from postroom.errors import (
    AuthenticationError,
    CertificateError,
    ConfigError,
    ConnectionLostError,
    MailServerError,
    PostroomError,
    ProtocolError,
    ServerTimeoutError,
    ServerUnreachableError,
)
from postroom.logs import get_logger
from postroom.transports.ews.xml import sanitize_stream

__all__ = ["EwsClient", "ews_errors_mapped", "primary_address"]

_log = get_logger("postroom.ews")
T = TypeVar("T")
_lock = threading.Lock()
_filters_added = False
_connections = itertools.count(1)


#: Bytes per block read from an EWS reply.
_READ_BLOCK = 64 * 1024


class _ConnectionAdapter(requests.adapters.HTTPAdapter):
    """One connection's TLS verification and timeouts (exchangelib passes neither), and its replies cleaned."""

    def __init__(self, verify: str | bool, timeout: tuple[float, float]) -> None:
        # as exchangelib's own adapter: one connection per session, no retries (its retry policy wraps every request)
        super().__init__(pool_block=True, pool_connections=1, pool_maxsize=1, max_retries=0)
        self._verify = verify
        self._timeout = timeout

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = self._timeout
        if self._verify is not True:  # True: keep what requests chose (REQUESTS_CA_BUNDLE or the system bundle)
            kwargs["verify"] = self._verify
        response: Any = super().send(request, *args, **kwargs)
        read = response.iter_content

        def iter_content(chunk_size: int | None = 1, decode_unicode: bool = False) -> Any:
            if decode_unicode:
                return read(chunk_size, decode_unicode)
            # exchangelib asks with requests' default of 1 byte: a byte at a time through the cleaner cost
            # 7 ms a message (profiled); blocks of 64 KB cost nothing, and its parser takes any size
            return sanitize_stream(read(max(chunk_size or 0, _READ_BLOCK), False))

        response.iter_content = iter_content  # this response only: exchangelib parses what it yields
        return response


def _contain(protocol: Any, verify: str | bool, timeout: tuple[float, float]) -> None:
    """Give ``protocol`` (this connection's) sessions that carry this connection's adapter."""
    create = protocol.create_session
    endpoint = protocol.service_endpoint

    def create_session() -> Any:
        session = create()
        session.mount(endpoint, _ConnectionAdapter(verify, timeout))  # replaces exchangelib's, same prefix
        return session

    protocol.create_session = create_session
    protocol.close()  # sessions made before (by autodiscover) go; every new one has the adapter


class _ScrubAuthorization(logging.Filter):
    """exchangelib logs request headers at DEBUG: hide the Authorization value (Basic is base64 of the password)."""

    _HEADER = re.compile(r"""(authorization['"]?\s*[:=]\s*['"]?)([A-Za-z]+)\s+[^'",}\s]+""", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(self._HEADER.sub(r"\1\2 ***", message))
        if clean != message:
            record.msg, record.args = clean, None
        return True


def _add_log_filters() -> None:
    global _filters_added
    with _lock:
        if _filters_added:
            return
        scrub = _ScrubAuthorization()
        for name in ("exchangelib.util", "exchangelib.util.xml", "exchangelib.protocol", "exchangelib.services.common"):
            logging.getLogger(name).addFilter(scrub)
        _filters_added = True


class _WaitOutThrottling(FaultTolerance):  # type: ignore[misc]
    """exchangelib's fault tolerance, except that HTTP 401 is a login failure, not throttling.

    exchangelib's policy waits out a 401 as if the server were busy (for up to
    ``max_wait``): a wrong password would then hang a bot for minutes.
    """

    def raise_response_errors(self, response: Any) -> Any:
        if response.status_code == 401:
            raise ews_errors.UnauthorizedError(f"Invalid credentials for {response.url}")
        return super().raise_response_errors(response)


#: The build exchangelib assumes for a given API version (the server's real build is read from its replies).
_BUILDS = {api: build for build, api, _ in reversed(VERSIONS)}


class _TokenCredentials(OAuth2AuthorizationCodeCredentials):  # type: ignore[misc]
    """Bearer tokens from postroom's token source: exchangelib asks :meth:`refresh` after a 401."""

    def __init__(self, login: TokenLogin) -> None:
        self._login = login
        self._current = login.tokens.access_token()
        super().__init__(access_token=_oauth_token(self._current))

    def refresh(self, session: Any) -> None:
        self._current = self._login.tokens.renew(self._current)
        self.access_token = _oauth_token(self._current)

    def __repr__(self) -> str:
        return "_TokenCredentials(***)"


def _oauth_token(secret: Secret) -> OAuth2Token:
    return OAuth2Token({"access_token": secret.reveal(), "token_type": "Bearer"})


def _username(config: Ews, login: PasswordLogin) -> str:
    """``DOMAIN\\user`` when a domain is given for a bare user name; UPNs and ``DOMAIN\\user`` stay."""
    user = login.username.reveal()
    if config.domain and "\\" not in user and "@" not in user:
        return f"{config.domain}\\{user}"
    if config.auth.kind == "ntlm" and "\\" not in user and "@" not in user:
        raise ConfigError("domain", "is required for NTLM with a bare user name", hint="give domain='CORP' (or a UPN)")
    return user


def primary_address(config: Ews, login: Login) -> str:
    """The mailbox to open: ``mailbox``, else the username when it is an email address."""
    if config.mailbox:
        return config.mailbox
    user = login.username.reveal()
    if "@" in user and "\\" not in user:
        return user
    raise ConfigError(
        "mailbox", "is required when the username is not an email address", hint="give mailbox='me@corp.example'"
    )


def _configuration(config: Ews, login: Login) -> Configuration:
    credentials: Any
    if isinstance(login, TokenLogin):
        credentials, auth_type = _TokenCredentials(login), OAUTH2
        if config.effective_access_type == "impersonation":
            credentials.identity = Identity(primary_smtp_address=primary_address(config, login))
    else:
        credentials = Credentials(_username(config, login), login.password.reveal())
        auth_type = NTLM if config.auth.kind == "ntlm" else BASIC
    # exchangelib shares one protocol object (retry policy, sessions) among equal credentials;
    # a field of our own makes every postroom connection's credentials, and so its protocol, its own.
    credentials.postroom_connection = next(_connections)
    retry = _WaitOutThrottling(max_wait=config.max_throttle_wait) if config.max_throttle_wait else FailFast()
    version = Version(build=_BUILDS[config.version], api_version=config.version) if config.version else None
    return Configuration(
        service_endpoint=config.url,
        credentials=credentials,
        auth_type=auth_type,
        version=version,
        retry_policy=retry,
        max_connections=1,
    )


class EwsClient:
    """One exchangelib :class:`Account` and what it takes to close it cleanly."""

    def __init__(self, config: Ews, login: Login) -> None:
        _add_log_filters()
        self.config = config
        self.address = primary_address(config, login)
        self._configuration = _configuration(config, login)
        self.account: Any = None

    def open(self) -> Any:
        verify: str | bool = str(self.config.ca_file) if self.config.ca_file else self.config.verify_certificate
        access = IMPERSONATION if self.config.effective_access_type == "impersonation" else DELEGATE
        settings = (verify, (self.config.connect_timeout, self.config.read_timeout))
        with ews_errors_mapped(self.config, "login"):
            if self.config.url is None:  # autodiscover, from the mailbox address's domain
                self.account = Account(self.address, config=self._configuration, autodiscover=True, access_type=access)
                _contain(self.account.protocol, *settings)
                _log.info("autodiscover found %s for %s", self.account.protocol.service_endpoint, self.address)
            else:
                _contain(Protocol(config=self._configuration), *settings)  # the Account below gets this one
                self.account = Account(
                    self.address,
                    config=self._configuration,
                    autodiscover=False,
                    access_type=access,
                    default_timezone=None,
                )
        self.call(lambda: self.account.inbox)  # GetFolder: proves the login and the mailbox access
        return self.account

    def call(self, operation: Callable[[], T], stage: str = "login") -> T:
        """Run ``operation``; when the server refuses the OAuth2 token (revoked, expired early), renew it once."""
        try:
            with ews_errors_mapped(self.config, stage):
                return operation()
        except AuthenticationError as refused:
            credentials = self._configuration.credentials
            if not (refused.token_rejected and isinstance(credentials, _TokenCredentials)):
                raise
            _log.info("the server refused the access token; renewing it")
            credentials.refresh(None)
            if self.account is not None:
                self.account.protocol.credentials = credentials  # new HTTP sessions carry the new token
            with ews_errors_mapped(self.config, stage):
                return operation()

    def close(self) -> None:
        account, self.account = self.account, None
        try:
            if account is not None:
                account.protocol.close()
        except Exception as exc:  # closing never raises
            _log.debug("closing EWS sessions: %s", exc)
        with _lock, contextlib.suppress(KeyError):
            del Protocol[self._configuration]


_AUTH_HINT = {
    "basic": "check the username and password; Exchange may also have Basic authentication turned off (try NTLM)",
    "ntlm": "check the username, password and domain (DOMAIN\\user); the server may not offer NTLM (try Basic)",
}


@contextmanager
def ews_errors_mapped(config: Ews, stage: str) -> Iterator[None]:
    """exchangelib and requests exceptions → postroom's errors, with the field to fix."""
    server = config.address
    try:
        yield
    except PostroomError:
        raise
    except ews_errors.UnauthorizedError as exc:
        kind = config.auth.kind
        raise AuthenticationError(
            f"the Exchange server refused the {'token' if kind.startswith('oauth2') else 'credentials'} ({_text(exc)})",
            hint=_AUTH_HINT.get(kind, "sign in again (postroom auth login NAME) or check the app's EWS permission"),
            token_rejected=kind.startswith("oauth2"),
            server=server,
        ) from None
    except (ews_errors.ErrorNonExistentMailbox, ews_errors.ErrorMailboxStoreUnavailable) as exc:
        raise ConfigError(
            "mailbox", f"no such mailbox on the server ({_text(exc)})", hint="give the primary SMTP address"
        ) from None
    except (ews_errors.ErrorImpersonateUserDenied, ews_errors.ErrorAccessDenied) as exc:
        hint = (
            "an app needs the ApplicationImpersonation role (or full_access_as_app) for the mailbox"
            if config.effective_access_type == "impersonation"
            else "the signed-in user needs FullAccess to the shared mailbox (Add-MailboxPermission)"
        )
        raise AuthenticationError(
            f"access to the mailbox was denied ({_text(exc)})", hint=hint, server=server
        ) from None
    except ews_errors.ErrorInvalidServerVersion as exc:
        raise ConfigError(
            "version",
            f"the server does not speak {config.version} ({_text(exc)})",
            hint="leave version out to detect it",
        ) from None
    except (ews_errors.RateLimitError, ews_errors.ErrorServerBusy) as exc:
        raise MailServerError(
            f"the server is throttling this client and did not recover within {config.max_throttle_wait:.0f} s",
            hint="try later, or raise max_throttle_wait",
            server=server,
        ) from exc
    except ews_errors.ErrorTimeoutExpired as exc:
        raise _unreachable(config, stage, f" ({_text(exc)})") from None
    except ews_errors.TransportError as exc:
        text = _text(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            raise CertificateError(
                f"the certificate of {config.server_host} is not trusted ({text})",
                hint="give ca_file= with the CA that signed it (never turn verification off in production)",
                server=server,
            ) from None
        if "timed out" in text.lower():
            raise ServerTimeoutError(
                f"{config.address} did not answer in time", hint="raise read_timeout or check the server", server=server
            ) from None
        raise _unreachable(config, stage, f" ({text})") from None
    except ews_errors.ResponseMessageError as exc:
        raise ProtocolError(
            f"the Exchange server refused the request: {type(exc).__name__}: {_text(exc)}", server=server
        ) from None
    except ews_errors.EWSError as exc:
        raise ProtocolError(f"EWS error: {type(exc).__name__}: {_text(exc)}", server=server) from None
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise _unreachable(config, stage, "") from exc


def _unreachable(config: Ews, stage: str, detail: str) -> MailServerError:
    """No answer: while logging in, the address is wrong or blocked; later, the connection dropped (the
    session reconnects on ConnectionLostError)."""
    if stage == "login":
        return ServerUnreachableError(
            f"cannot reach {config.address}{detail}",
            hint="check the URL or host, and the firewall",
            server=config.address,
        )
    return ConnectionLostError(f"the connection to {config.address} dropped{detail}", server=config.address)


def _text(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))[:300]
