"""Graph's error envelope → postroom's errors, by ``error.code`` (never by the message text).

Every Graph error body is ``{"error": {"code", "message", "innerError": {"request-id", "date"}}}``.
The postroom error names what to fix and keeps the ``request-id`` (Microsoft support asks for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from postroom.credentials import redact
from postroom.errors import (
    AuthenticationError,
    ConfigError,
    MailServerError,
    PostroomError,
    ProtocolError,
    ServerBusyError,
)

__all__ = [
    "GONE_CODES",
    "RESYNC_CODES",
    "THROTTLE_CODES",
    "AccessContext",
    "GraphFault",
    "SyncStateLostError",
    "fault_of",
    "postroom_error",
]

#: Codes that mean "slow down": wait ``Retry-After`` (or back off) and send again.
THROTTLE_CODES = frozenset(
    {"ApplicationThrottled", "ErrorTooManyObjectsOpened", "activityLimitReached", "TooManyRequests", "ServerBusy"}
)
#: Codes of a message that is not (or no longer) in the mailbox.
GONE_CODES = frozenset({"ErrorItemNotFound", "itemNotFound", "ResourceNotFound", "ErrorInvalidMailboxItemId"})
#: Codes of a delta token the server no longer knows: start the round again.
RESYNC_CODES = frozenset({"SyncStateNotFound", "syncStateNotFound", "resyncRequired", "SyncStateInvalid"})
_MAILBOX_CODES = frozenset({"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotHostedInExchangeOnline"})
_DENIED_CODES = frozenset(
    {"ErrorAccessDenied", "accessDenied", "Authorization_RequestDenied", "ErrorInsufficientScope"}
)
_TOKEN_CODES = frozenset({"InvalidAuthenticationToken", "CompactToken_ParsingFailed", "TokenExpired"})


class SyncStateLostError(ProtocolError):
    """Graph no longer knows a delta token (``410 SyncStateNotFound``): the round starts over."""


@dataclass(frozen=True)
class GraphFault:
    """One Graph error: the HTTP status, ``error.code`` and message, and the ids support needs."""

    status: int
    code: str
    message: str
    request_id: str | None = None
    date: str | None = None

    @property
    def support(self) -> str:
        """``request-id …, date …`` for error messages, or "" when Graph sent none."""
        parts = [f"request-id {self.request_id}" if self.request_id else "", f"date {self.date}" if self.date else ""]
        return ", ".join(p for p in parts if p)


def fault_of(status: int, body: Any, headers: dict[str, str] | None = None) -> GraphFault:
    """The fault in a Graph reply (any shape: a proxy's HTML page is a fault too)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    inner = error.get("innerError") or error.get("innererror") or {}
    if not isinstance(inner, dict):
        inner = {}
    request_id = inner.get("request-id") or (headers or {}).get("request-id")
    code = str(error.get("code") or f"HTTP{status}")
    message = " ".join(str(error.get("message") or "").split())[:300]
    return GraphFault(status, code, redact(message), str(request_id) if request_id else None, inner.get("date"))


@dataclass(frozen=True)
class AccessContext:
    """What the session knows when Graph refuses access, to name the missing piece."""

    app_only: bool
    mailbox: str
    granted: tuple[str, ...]


def _denied_hint(access: AccessContext) -> str:
    granted = {scope.rsplit("/", 1)[-1].lower() for scope in access.granted}
    shared = access.mailbox != "me"
    if access.app_only:
        if granted & {"mail.readwrite", "mail.read"}:
            return (
                f"the app has a Mail application permission, so an RBAC for Applications management scope or an "
                f"ApplicationAccessPolicy leaves {access.mailbox} out: add the mailbox to the scope "
                "(Test-ServicePrincipalAuthorization or Test-ApplicationAccessPolicy shows it; "
                "changes take up to an hour)"
            )
        return (
            "give the app the application permission Mail.ReadWrite (and Mail.Send to send) with admin consent, "
            f"or an RBAC for Applications role assignment scoped to {access.mailbox}; if it has them, an "
            "ApplicationAccessPolicy leaves this mailbox out"
        )
    if shared and not granted & {"mail.readwrite.shared", "mail.read.shared"}:
        return (
            f"{access.mailbox} is another user's mailbox: the sign-in needs the delegated permission "
            "Mail.ReadWrite.Shared (and Mail.Send.Shared to send); add it to the app registration and sign in again"
        )
    if shared:
        return (
            f"the signed-in user has no access to {access.mailbox}: an Exchange admin grants it with "
            f"Add-MailboxPermission -Identity {access.mailbox} -User <user> -AccessRights FullAccess"
        )
    return "the sign-in needs the delegated permission Mail.ReadWrite (and Mail.Send to send); sign in again"


def postroom_error(fault: GraphFault, *, doing: str, access: AccessContext) -> PostroomError:
    """The postroom error for ``fault`` met while ``doing`` (e.g. "listing INBOX")."""
    said = f"Graph said {fault.code}" + (f": {fault.message}" if fault.message else "")
    support = f" ({fault.support})" if fault.support else ""
    problem = f"{doing}: {said}{support}"
    error: PostroomError
    if fault.code in RESYNC_CODES or fault.status == 410:
        error = SyncStateLostError(problem, hint="the folder is listed again; only messages not seen before come")
    elif fault.code in _TOKEN_CODES or fault.status == 401:
        error = AuthenticationError(
            problem,
            hint="Graph refused the token even after a renewal: check that azure_cloud is the tenant's cloud, "
            "then sign in again",
            token_rejected=True,
            sasl_status=fault.code,
        )
    elif fault.code in _DENIED_CODES or fault.status == 403:
        error = AuthenticationError(problem, hint=_denied_hint(access), sasl_status=fault.code)
    elif fault.code in _MAILBOX_CODES:
        error = ConfigError(
            "mailbox",
            f"{access.mailbox!r} is not a mailbox Graph can open ({fault.code}{support})",
            hint="check the address; a shared mailbox needs an Exchange Online license-free mailbox, not a group",
        )
    elif fault.code in THROTTLE_CODES or fault.status in (429, 503, 504):
        error = ServerBusyError(problem, retry_after=None, hint="Graph is throttling this mailbox: try again later")
    elif fault.code in {"InefficientFilter", "ErrorRestrictionTooComplex"}:
        error = ProtocolError(problem, hint="report this to postroom with the filter you used: it must not happen")
    elif fault.status >= 500:
        error = MailServerError(problem, hint="a fault at Microsoft: try again; give the request-id to support")
    else:
        error = ProtocolError(problem)
    return error
