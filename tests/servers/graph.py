"""A loopback stand-in for Microsoft Graph's mail API, for the tests. **Not Microsoft Graph.**

Microsoft 365 cannot run here, so this HTTPS server (its own CA) speaks the part of Graph
v1.0 that postroom uses, following Microsoft's documented wire format and the rules the
research notes list (``../shared/research/graph.md`` §2.8):

- per-mailbox stores under ``/me`` (the token's user) and ``/users/{upn}``; a delegated token
  opens another user's mailbox only with a ``.Shared`` scope and a delegate grant; an app
  token only the mailboxes its scope covers, else ``403 ErrorAccessDenied`` "Access to OData
  is disabled."; ``/me`` with an app token is refused; tokens are checked by introspection at
  the test authorization server and must carry a Graph scope;
- paging with ``@odata.nextLink`` whose ``$skip`` is *not* the offset (a client that computes
  it gets the wrong page); default ``$top`` 10, at most 1000;
- the query rules: ``$orderby``'s property first in ``$filter`` or ``400 InefficientFilter``;
  ``contains()`` with ``$orderby`` refused; ``$search`` with ``$filter``/``$orderby`` refused and
  capped at 1,000;
- message and eventMessage JSON, ``$select``, ``$expand`` of attachments and the size property,
  ``Prefer: outlook.body-content-type``;
- new ids after a move unless the request says ``Prefer: IdType="ImmutableId"`` (echoed in
  ``Preference-Applied``); an id of another mailbox is ``404 ErrorInvalidMailboxItemId``;
- ``$value`` MIME, MIME ``sendMail`` answered ``202`` (a copy kept in Sent Items),
  ``ErrorMimeContentInvalidBase64String``; file, item and reference attachments (``405`` for a
  reference's ``$value``);
- ``$batch`` of at most 20 with per-request statuses, run 4 at a time, counted against the
  mailbox's concurrency: more than 4 in flight is ``429 ApplicationThrottled`` with ``Retry-After``;
- delta per folder with ``@removed`` rows and a ``410 SyncStateNotFound`` on demand;
- the error envelope with ``innerError.request-id`` and ``date``.

Knobs for the tests: ``throttle_next`` (the next N requests get 429), ``throttle_in_batch`` (the
next N requests inside batches get 429), ``cut_next`` (the next N replies are cut after the work
is done), ``latency`` (seconds each request takes).
"""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
import html
import itertools
import json
import logging
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from postroom.sandbox.certs import make_certificates
from tests.servers.delivery import parse_delivery
from tests.servers.dovecot import free_port

__all__ = ["GRAPH", "GraphAttachment", "GraphMessage", "GraphStandIn", "graph_server"]

GRAPH = "https://graph.microsoft.com"
_log = logging.getLogger("tests.graph")
#: Added to the offset in the ``$skip`` of every next link: a client must follow links, not compute them.
SKIP_BIAS = 1_000_003
MAX_IN_FLIGHT = 4
WELL_KNOWN = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
}


class GraphFault(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _new_id() -> str:
    return "AAMkAG" + secrets.token_urlsafe(24).replace("-", "_") + "="


@dataclass
class GraphAttachment:
    name: str
    content_type: str
    content: bytes
    kind: str = "fileAttachment"  # or itemAttachment (content: the MIME), referenceAttachment
    is_inline: bool = False
    id: str = field(default_factory=lambda: "AAMkATT" + secrets.token_urlsafe(16))


@dataclass
class GraphMessage:
    """One message as Exchange stores it after parsing the MIME."""

    folder_id: str
    raw: bytes
    subject: str
    sender: tuple[str, str]
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    bcc: list[tuple[str, str]]
    reply_to: list[tuple[str, str]]
    message_id: str
    sent: dt.datetime
    received: dt.datetime
    body: str
    body_type: str  # "html" or "text"
    attachments: list[GraphAttachment]
    headers: list[tuple[str, str]]
    is_read: bool = False
    flag_status: str = "notFlagged"
    categories: list[str] = field(default_factory=list)
    odata_type: str = "#microsoft.graph.message"
    meeting: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)

    @classmethod
    def from_mime(cls, folder_id: str, raw: bytes, *, received: dt.datetime | None = None) -> GraphMessage:
        found = parse_delivery(raw)
        attachments = [
            GraphAttachment(
                f.name,
                f.content_type,
                f.content,
                kind="itemAttachment" if f.is_message else "fileAttachment",
                is_inline=f.is_inline,
            )
            for f in found.attachments
        ]
        meeting: dict[str, Any] = {}
        odata_type = "#microsoft.graph.message"
        if found.meeting is not None:
            kind = {"REQUEST": "meetingRequest", "CANCEL": "meetingCancelled", "REPLY": "meetingAccepted"}
            meeting = {
                "meetingMessageType": kind[found.meeting.method],
                "startDateTime": _zoned(found.meeting.start),
                "endDateTime": _zoned(found.meeting.end),
                "location": {"displayName": found.meeting.location},
                "isAllDay": False,
            }
            request = found.meeting.method == "REQUEST"
            odata_type = "#microsoft.graph.eventMessageRequest" if request else "#microsoft.graph.eventMessage"
        return cls(
            folder_id=folder_id,
            raw=raw,
            subject=found.subject,
            sender=found.sender,
            to=found.to,
            cc=found.cc,
            bcc=found.bcc,
            reply_to=found.reply_to,
            message_id=found.message_id,
            sent=found.sent,
            received=received or dt.datetime.now(dt.UTC),
            body=found.body,
            body_type=found.body_type,
            attachments=attachments,
            headers=found.headers,
            odata_type=odata_type,
            meeting=meeting,
        )


def _zoned(when: dt.datetime | None) -> dict[str, str] | None:
    """A ``dateTimeTimeZone`` as Graph writes one (in UTC unless asked otherwise)."""
    if when is None:
        return None
    return {"dateTime": when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


@dataclass
class _Folder:
    id: str
    name: str
    parent_id: str
    well_known: str | None = None


@dataclass
class _Change:
    """One row of a folder's change log, for delta."""

    serial: int
    message_id: str
    removed: bool


@dataclass
class MailboxStore:
    address: str
    folders: dict[str, _Folder] = field(default_factory=dict)
    messages: dict[str, GraphMessage] = field(default_factory=dict)
    changes: dict[str, list[_Change]] = field(default_factory=dict)
    root_id: str = field(default_factory=lambda: "AAMkROOT" + secrets.token_urlsafe(8))

    def __post_init__(self) -> None:
        for name, display in WELL_KNOWN.items():
            self.add_folder(display, self.root_id, name)

    def add_folder(self, name: str, parent_id: str, well_known: str | None = None) -> _Folder:
        folder = _Folder("AAMkFLD" + secrets.token_urlsafe(12), name, parent_id, well_known)
        self.folders[folder.id] = folder
        self.changes[folder.id] = []
        return folder

    def folder(self, ref: str) -> _Folder:
        if ref in self.folders:
            return self.folders[ref]
        for folder in self.folders.values():
            if folder.well_known == ref.lower():
                return folder
        raise GraphFault(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def path(self, path: str) -> _Folder:
        """A folder by display-name path (tests' convenience): ``Inbox/Project``."""
        parent = self.root_id
        found = None
        for name in path.split("/"):
            found = next(
                (f for f in self.folders.values() if f.parent_id == parent and f.name.lower() == name.lower()), None
            )
            if found is None:
                found = self.add_folder(name, parent)
            parent = found.id
        assert found is not None
        return found

    def log(self, folder_id: str, message_id: str, *, removed: bool = False) -> None:
        self.changes.setdefault(folder_id, []).append(_Change(next(_serials), message_id, removed))


_serials = itertools.count(1)


@dataclass
class GraphStandIn:
    """The running stand-in: its URL and CA, the mailboxes, and the tests' knobs and counters."""

    url: str
    ca_file: Path
    introspect: Callable[[str], dict[str, Any]]
    mailboxes: dict[str, MailboxStore] = field(default_factory=dict)
    #: Delegated access: mailbox → users (besides its owner) who may open it (FullAccess).
    delegates: dict[str, set[str]] = field(default_factory=dict)
    #: App-only access: client id → mailboxes it may open (None: every mailbox, as an unscoped Mail.ReadWrite).
    app_scope: dict[str, set[str] | None] = field(default_factory=dict)
    #: The resource a token must be for (Graph's host in the cloud the stand-in plays).
    audience: str = GRAPH
    throttle_next: int = 0
    throttle_in_batch: int = 0
    cut_next: int = 0
    latency: float = 0.0
    #: Delta tokens the server still knows (a small cache, as Exchange's: expired ones give 410).
    delta_tokens: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    sub_requests: int = 0
    bytes_out: int = 0
    peak_in_flight: int = 0
    throttled: int = 0
    outbox: list[bytes] = field(default_factory=list)
    #: Upload sessions: token → (mailbox, message id, attachment name, size, content type, bytes so far).
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Authorization headers seen on upload URLs (which must carry none: they are pre-authenticated).
    upload_authorizations: int = 0
    #: Answer every upload chunk with 500 (a test of a send that fails before anything went out).
    refuse_uploads: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    _in_flight: dict[str, int] = field(default_factory=dict)
    _tokens: dict[str, dict[str, Any]] = field(default_factory=dict)

    def mailbox(self, address: str) -> MailboxStore:
        key = address.lower()
        with self.lock:
            if key not in self.mailboxes:
                self.mailboxes[key] = MailboxStore(key)
            return self.mailboxes[key]

    def deliver(
        self,
        address: str,
        raw: bytes,
        folder: str = "Inbox",
        *,
        seen: bool = False,
        received: dt.datetime | None = None,
    ) -> GraphMessage:
        store = self.mailbox(address)
        with self.lock:
            target = store.folder("inbox") if folder.lower() == "inbox" else store.path(folder)
            message = GraphMessage.from_mime(target.id, raw, received=received)
            message.is_read = seen
            store.messages[message.id] = message
            store.log(target.id, message.id)
            return message

    def in_folder(self, address: str, path: str) -> list[GraphMessage]:
        store = self.mailbox(address)
        with self.lock:
            target = store.folder(path) if path.lower() in WELL_KNOWN else store.path(path)
            return [m for m in store.messages.values() if m.folder_id == target.id]

    def reset(self) -> None:
        with self.lock:
            self.mailboxes.clear()
            self.delegates.clear()
            self.app_scope.clear()
            self.delta_tokens.clear()
            self.requests.clear()
            self.outbox.clear()
            self._tokens.clear()
            self.throttle_next = self.throttle_in_batch = self.cut_next = 0
            self.refuse_uploads = False
            self.uploads.clear()
            self.latency = 0.0
            self.audience = GRAPH
            self.sub_requests = self.bytes_out = self.peak_in_flight = self.throttled = 0

    def expire_delta_tokens(self) -> None:
        """Forget every delta token, as Exchange does when its cache is full: the next round gets 410."""
        with self.lock:
            self.delta_tokens.clear()

    def stats(self, *, reset: bool = False) -> dict[str, Any]:
        """Requests (HTTP, and inside batches), reply bytes, peak concurrency, 429s, and this process's CPU."""
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        with self.lock:
            found = {
                "requests": len(self.requests),
                "sub_requests": self.sub_requests,
                "bytes_out": self.bytes_out,
                "peak_in_flight": self.peak_in_flight,
                "throttled": self.throttled,
                "cpu": usage.ru_utime + usage.ru_stime,
            }
            if reset:
                self.requests.clear()
                self.sub_requests = self.bytes_out = self.peak_in_flight = self.throttled = 0
        return found

    def forget_tokens(self) -> None:
        """Introspect every token again (after a test revoked some)."""
        with self.lock:
            self._tokens.clear()

    def count(self, method: str, pattern: str) -> int:
        """How many requests (not counting those inside batches) matched ``method`` and the path regex."""
        with self.lock:
            return sum(1 for m, p in self.requests if m == method and re.search(pattern, p))

    # -- auth -------------------------------------------------------------------------------

    def _token(self, header: str | None) -> dict[str, Any]:
        if not header or not header.startswith("Bearer "):
            raise GraphFault(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = header[7:]
        with self.lock:
            found = self._tokens.get(token)
        if found is None:
            found = self.introspect(token)
            with self.lock:
                self._tokens[token] = found
        if not found.get("active"):
            raise GraphFault(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        scopes = str(found.get("scope", "")).split()
        if not any(s.startswith(self.audience + "/") for s in scopes):
            raise GraphFault(401, "InvalidAuthenticationToken", "Invalid audience.")
        return found

    def _open(self, token: dict[str, Any], who: str, *, sending: bool = False) -> MailboxStore:
        scopes = {s.removeprefix(self.audience + "/") for s in str(token.get("scope", "")).split()}
        app_only = ".default" in scopes
        user = str(token.get("username") or "").lower()
        if who == "me":
            if app_only:
                raise GraphFault(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            who = user
        who = who.lower()
        if app_only:
            allowed = self.app_scope.get(str(token.get("client_id")), set())
            if allowed is not None and who not in allowed:
                raise GraphFault(403, "ErrorAccessDenied", "Access to OData is disabled.")
            return self.mailbox(who)
        own = who == user
        needed = ("Mail.Send" if sending else "Mail.ReadWrite") + ("" if own else ".Shared")
        if needed not in scopes and not (own and needed + ".Shared" in scopes):
            raise GraphFault(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        if not own and user not in self.delegates.get(who, set()):
            raise GraphFault(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        return self.mailbox(who)

    # -- concurrency ------------------------------------------------------------------------

    @contextmanager
    def _slots(self, mailbox: str, weight: int) -> Iterator[None]:
        with self.lock:
            current = self._in_flight.get(mailbox, 0)
            if current + weight > MAX_IN_FLIGHT:
                self.throttled += 1
                raise GraphFault(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )
            self._in_flight[mailbox] = current + weight
            self.peak_in_flight = max(self.peak_in_flight, current + weight)
        try:
            if self.latency:
                time.sleep(self.latency)
            yield
        finally:
            with self.lock:
                self._in_flight[mailbox] -= weight


# -- rendering ---------------------------------------------------------------------------------


def _address(pair: tuple[str, str]) -> dict[str, Any]:
    return {"emailAddress": {"name": pair[0] or pair[1], "address": pair[1]}}


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _html_to_text(text: str) -> str:
    text = re.sub(r"(?is)<(script|style).*?</\1>", "", text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</li>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text)).strip()


def _body(message: GraphMessage, prefer: str) -> dict[str, str]:
    wanted = re.search(r'outlook\.body-content-type="?(text|html)"?', prefer)
    kind = wanted.group(1) if wanted else message.body_type
    if kind == message.body_type:
        return {"contentType": kind, "content": message.body}
    if kind == "text":
        return {"contentType": "text", "content": _html_to_text(message.body)}
    return {"contentType": "html", "content": f"<html><body><pre>{html.escape(message.body)}</pre></body></html>"}


def _attachment_json(attachment: GraphAttachment, *, content: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "@odata.type": f"#microsoft.graph.{attachment.kind}",
        "id": attachment.id,
        "name": attachment.name,
        "contentType": attachment.content_type if attachment.kind != "itemAttachment" else None,
        "size": len(attachment.content),
        "isInline": attachment.is_inline,
        "lastModifiedDateTime": "2026-12-01T00:00:00Z",
    }
    if content and attachment.kind == "fileAttachment":
        row["contentBytes"] = base64.b64encode(attachment.content).decode()
    return row


def _message_json(message: GraphMessage, select: set[str] | None, expand: str, prefer: str) -> dict[str, Any]:
    every: dict[str, Callable[[], Any]] = {
        "subject": lambda: message.subject,
        "from": lambda: _address(message.sender),
        "sender": lambda: _address(message.sender),
        "toRecipients": lambda: [_address(p) for p in message.to],
        "ccRecipients": lambda: [_address(p) for p in message.cc],
        "bccRecipients": lambda: [_address(p) for p in message.bcc],
        "replyTo": lambda: [_address(p) for p in message.reply_to],
        "receivedDateTime": lambda: _when(message.received),
        "sentDateTime": lambda: _when(message.sent),
        "isRead": lambda: message.is_read,
        "isDraft": lambda: False,
        "hasAttachments": lambda: any(not a.is_inline for a in message.attachments),
        "importance": lambda: "normal",
        "internetMessageId": lambda: message.message_id,
        "conversationId": lambda: "AAQk" + message.message_id.strip("<>")[:16],
        "parentFolderId": lambda: message.folder_id,
        "flag": lambda: {"flagStatus": message.flag_status},
        "categories": lambda: list(message.categories),
        "webLink": lambda: f"https://outlook.office365.com/owa/?ItemID={quote(message.id)}",
        "bodyPreview": lambda: _html_to_text(message.body)[:255],
        "body": lambda: _body(message, prefer),
        "internetMessageHeaders": lambda: [{"name": k, "value": v} for k, v in message.headers],
    }
    if message.meeting:
        for name, value in message.meeting.items():
            every[name] = lambda v=value: v  # type: ignore[misc]
    defaults = set(every) - {"internetMessageHeaders"}
    names = (select or defaults) - {"id"}
    unknown = [n for n in names if n not in every]
    if unknown:
        raise GraphFault(
            400,
            "RequestBroker--ParseUri",
            f"Could not find a property named '{unknown[0]}' on type 'microsoft.graph.message'.",
        )
    row: dict[str, Any] = {"@odata.etag": 'W/"CQAAABYAAAA"', "id": message.id}
    if message.odata_type != "#microsoft.graph.message":
        row["@odata.type"] = message.odata_type
    row.update({name: every[name]() for name in names})
    if "attachments" in expand:
        row["attachments"] = [_attachment_json(a, content=False) for a in message.attachments]
    if "singleValueExtendedProperties" in expand and "0x0E08" in expand:
        row["singleValueExtendedProperties"] = [{"id": "Integer 0xe08", "value": str(len(message.raw))}]
    return row


def _folder_json(store: MailboxStore, folder: _Folder) -> dict[str, Any]:
    children = [f for f in store.folders.values() if f.parent_id == folder.id]
    inside = [m for m in store.messages.values() if m.folder_id == folder.id]
    return {
        "id": folder.id,
        "displayName": folder.name,
        "parentFolderId": folder.parent_id,
        "childFolderCount": len(children),
        "totalItemCount": len(inside),
        "unreadItemCount": sum(1 for m in inside if not m.is_read),
        "isHidden": False,
    }


# -- queries -----------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"^(?:(?P<field>receivedDateTime|sentDateTime) (?P<op>ge|gt|lt|le) (?P<when>\S+)"
    r"|isRead eq (?P<read>true|false)"
    r"|contains\(subject,'(?P<term>(?:[^']|'')*)'\))$"
)


def _clauses(text: str) -> list[re.Match[str]]:
    parts = re.split(r" and (?=(?:[^']*'[^']*')*[^']*$)", text)
    found = []
    for part in parts:
        match = _CLAUSE.match(part.strip())
        if match is None:
            raise GraphFault(400, "BadRequest", f"Invalid filter clause: {part[:80]}")
        found.append(match)
    return found


def _matches(message: GraphMessage, clause: re.Match[str]) -> bool:
    if clause.group("field"):
        value = message.received if clause.group("field") == "receivedDateTime" else message.sent
        when = dt.datetime.fromisoformat(clause.group("when").replace("Z", "+00:00"))
        return {
            "ge": value >= when,
            "gt": value > when,
            "lt": value < when,
            "le": value <= when,
        }[clause.group("op")]
    if clause.group("read"):
        return message.is_read == (clause.group("read") == "true")
    term = clause.group("term").replace("''", "'")
    return term.lower() in message.subject.lower()


def _query(messages: list[GraphMessage], args: dict[str, str]) -> list[GraphMessage]:
    search, filter_, orderby = args.get("$search"), args.get("$filter"), args.get("$orderby")
    if search is not None and (filter_ or orderby):
        raise GraphFault(400, "BadRequest", "Query option '$search' is not allowed with '$filter' or '$orderby'.")
    clauses = _clauses(filter_) if filter_ else []
    if orderby:
        prop = orderby.split()[0]
        if not clauses or not (clauses[0].group("field") == prop):
            raise GraphFault(
                400, "InefficientFilter", "The restriction or sort order is too complex for this operation."
            )
        if any(c.group("term") is not None for c in clauses):
            raise GraphFault(
                400, "InefficientFilter", "The restriction or sort order is too complex for this operation."
            )
    found = [m for m in messages if all(_matches(m, c) for c in clauses)]
    if search is not None:
        words = search.strip('"').lower().split()
        found = [m for m in found if all(any(w.startswith(x) for w in m.subject.lower().split()) for x in words)]
        found.sort(key=lambda m: m.sent, reverse=True)
        return found[:1000]
    if orderby:
        found.sort(key=lambda m: (m.received, m.id), reverse=orderby.endswith(" desc"))
    else:  # Exchange's own order without $orderby: by the store's internal order, not dates
        found.sort(key=lambda m: m.id)
    return found


# -- the routes --------------------------------------------------------------------------------


@dataclass
class _Call:
    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise GraphFault(400, "BadRequest", "Unable to read JSON request payload.") from None


class _Reply:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None):
        self.status, self.body, self.headers, self.raw = status, body, headers or {}, raw


def _mailbox_and_rest(path: str) -> tuple[str, str]:
    if path == "/me" or path.startswith("/me/"):
        return "me", path[3:]
    found = re.match(r"^/users/([^/]+)(/.*)?$", path)
    if found is None:
        raise GraphFault(400, "BadRequest", f"Resource not found for the segment '{path.split('/')[1]}'.")
    return unquote(found.group(1)), found.group(2) or ""


class _Router:
    def __init__(self, state: GraphStandIn) -> None:
        self.state = state

    def handle(self, call: _Call, token: dict[str, Any]) -> _Reply:
        if call.path == "/$batch" and call.method == "POST":
            return self.batch(call, token)
        who, rest = _mailbox_and_rest(call.path)
        sending = rest == "/sendMail"
        store = self.state._open(token, who, sending=sending)
        with self.state._slots(store.address, 1), self.state.lock:
            return self.mail(store, call, rest)

    def batch(self, call: _Call, token: dict[str, Any]) -> _Reply:
        payload = call.json()
        requests = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests, list) or not requests:
            raise GraphFault(400, "BadRequest", "Invalid batch payload format.")
        if len(requests) > 20:
            raise GraphFault(400, "BadRequest", "The number of batch requests exceeds the limit of 20.")
        mailboxes = set()
        for sub in requests:
            try:
                who, _ = _mailbox_and_rest(unquote(urlsplit(str(sub.get("url", ""))).path))
                mailboxes.add(self.state._open(token, who).address)
            except GraphFault:
                continue  # that request answers with its own error
        weight = min(MAX_IN_FLIGHT, len(requests))
        responses = []
        with contextlib_nested([self.state._slots(m, weight) for m in sorted(mailboxes)]):
            for sub in requests:
                responses.append(self.sub(sub, token))
        return _Reply(200, {"responses": responses})

    def sub(self, sub: dict[str, Any], token: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            self.state.sub_requests += 1
            if self.state.throttle_in_batch > 0:
                self.state.throttle_in_batch -= 1
                self.state.throttled += 1
                return {
                    "id": sub.get("id"),
                    "status": 429,
                    "headers": {"Retry-After": "1"},
                    "body": _envelope("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
                }
        parts = urlsplit(str(sub.get("url", "")))
        headers = {str(k).lower(): str(v) for k, v in (sub.get("headers") or {}).items()}
        body = sub.get("body")
        call = _Call(
            str(sub.get("method", "GET")).upper(),
            unquote(parts.path),
            dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers,
            json.dumps(body).encode() if body is not None else b"",
        )
        try:
            who, rest = _mailbox_and_rest(call.path)
            store = self.state._open(token, who, sending=rest == "/sendMail")
            with self.state.lock:
                reply = self.mail(store, call, rest)
        except GraphFault as fault:
            return {
                "id": sub.get("id"),
                "status": fault.status,
                "headers": fault.headers,
                "body": _envelope(fault.code, fault.message),
            }
        return {"id": sub.get("id"), "status": reply.status, "headers": reply.headers, "body": reply.body}

    # -- one mailbox's resources ------------------------------------------------------------

    def mail(self, store: MailboxStore, call: _Call, rest: str) -> _Reply:
        immutable = "immutableid" in call.headers.get("prefer", "").lower()
        applied = {"Preference-Applied": 'IdType="ImmutableId"'} if immutable else {}
        m, a = call.method, call.args
        if rest == "/mailFolders" and m == "GET":
            top = [f for f in store.folders.values() if f.parent_id == store.root_id]
            return self.collection(call, [_folder_json(store, f) for f in top])
        if rest == "/mailFolders" and m == "POST":
            return self.create_folder(store, store.root_id, call)
        found = re.match(r"^/mailFolders/([^/]+)(/.*)?$", rest)
        if found:
            folder = store.folder(found.group(1))
            sub = found.group(2) or ""
            if sub == "" and m == "GET":
                return _Reply(200, _folder_json(store, folder))
            if sub == "/childFolders" and m == "GET":
                kids = [f for f in store.folders.values() if f.parent_id == folder.id]
                return self.collection(call, [_folder_json(store, f) for f in kids])
            if sub == "/childFolders" and m == "POST":
                return self.create_folder(store, folder.id, call)
            if sub == "" and m == "PATCH":
                name = str((call.json() or {}).get("displayName") or "").strip()
                clash = [
                    f
                    for f in store.folders.values()
                    if f.parent_id == folder.parent_id and f.name.lower() == name.lower()
                ]
                if not name or (clash and clash[0] is not folder):
                    raise GraphFault(409, "ErrorFolderExists", "A folder with the specified name already exists.")
                folder.name = name
                return _Reply(200, _folder_json(store, folder))
            if sub == "/move" and m == "POST":
                target = (call.json() or {}).get("destinationId", "")
                folder.parent_id = store.root_id if target == "msgfolderroot" else store.folder(str(target)).id
                return _Reply(201, _folder_json(store, folder))
            if sub == "/permanentDelete" and m == "POST":
                if folder.well_known:
                    raise GraphFault(403, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
                doomed = {folder.id}
                while True:
                    more = {f.id for f in store.folders.values() if f.parent_id in doomed} - doomed
                    if not more:
                        break
                    doomed |= more
                for folder_id in doomed:
                    del store.folders[folder_id]
                for item_id in [i for i, x in store.messages.items() if x.folder_id in doomed]:
                    del store.messages[item_id]
                return _Reply(204)
            if sub == "/messages" and m == "GET":
                inside = [x for x in store.messages.values() if x.folder_id == folder.id]
                chosen = _query(inside, a)
                select = set(a["$select"].split(",")) if a.get("$select") else None
                prefer = call.headers.get("prefer", "")
                return self.collection(
                    call,
                    chosen,
                    render=lambda x: _message_json(x, select, a.get("$expand", ""), prefer),
                    headers=applied,
                )
            if sub == "/messages/delta" and m == "GET":
                return self.delta(store, folder, call, applied)
            through = re.match(r"^/messages/([^/]+)(/.*)?$", sub)
            if through:  # a message addressed through its folder, as the SDKs do
                message = self.message(store, through.group(1))
                return self.on_message(store, message, through.group(2) or "", call, immutable, applied)
            raise GraphFault(400, "BadRequest", f"Unsupported folder request {m} {sub}")
        found = re.match(r"^/messages/([^/]+)(/.*)?$", rest)
        if found:
            message = self.message(store, found.group(1))
            sub = found.group(2) or ""
            return self.on_message(store, message, sub, call, immutable, applied)
        if rest == "/sendMail" and m == "POST":
            return self.send(store, call)
        if rest == "/messages" and m == "POST":
            return self.draft(store, call)
        raise GraphFault(400, "BadRequest", f"Resource not found for the segment '{rest[:60]}'.")

    def draft(self, store: MailboxStore, call: _Call) -> _Reply:
        """A draft from MIME (base64 in a text/plain body), in Drafts."""
        if not call.headers.get("content-type", "").startswith("text/plain"):
            raise GraphFault(400, "BadRequest", "the stand-in makes drafts from MIME only")
        try:
            raw = base64.b64decode(call.body, validate=True)
        except ValueError:
            raise GraphFault(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from None
        if len(call.body) > 4 * 1024 * 1024:
            raise GraphFault(413, "ErrorRequestEntityTooLarge", "The request payload is too large (over 4 MB).")
        draft = GraphMessage.from_mime(store.folder("drafts").id, raw)
        draft.is_read = True
        store.messages[draft.id] = draft
        store.log(draft.folder_id, draft.id)
        return _Reply(201, _message_json(draft, None, "", ""))

    def message(self, store: MailboxStore, item_id: str) -> GraphMessage:
        found = store.messages.get(item_id)
        if found is not None:
            return found
        if any(item_id in other.messages for other in self.state.mailboxes.values()):
            raise GraphFault(404, "ErrorInvalidMailboxItemId", "Item Id doesn't belong to the current mailbox.")
        raise GraphFault(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def on_message(
        self,
        store: MailboxStore,
        message: GraphMessage,
        sub: str,
        call: _Call,
        immutable: bool,
        applied: dict[str, str],
    ) -> _Reply:
        m = call.method
        if sub == "" and m == "GET":
            select = set(call.args["$select"].split(",")) if call.args.get("$select") else None
            prefer = call.headers.get("prefer", "")
            return _Reply(200, _message_json(message, select, call.args.get("$expand", ""), prefer), applied)
        if sub == "/$value" and m == "GET":
            return _Reply(200, raw=message.raw, headers={"Content-Type": "text/plain"})
        if sub == "" and m == "PATCH":
            change = call.json() or {}
            if "isRead" in change:
                message.is_read = bool(change["isRead"])
            if "flag" in change:
                message.flag_status = str(change["flag"].get("flagStatus", "notFlagged"))
            if "categories" in change:
                message.categories = [str(c) for c in change["categories"]]
            store.log(message.folder_id, message.id)
            return _Reply(200, _message_json(message, {"isRead", "flag", "categories"}, "", ""), applied)
        if sub == "/move" and m == "POST":
            target = store.folder(str((call.json() or {}).get("destinationId", "")))
            store.log(message.folder_id, message.id, removed=True)
            message.folder_id = target.id
            if not immutable:  # "creates a new copy … and removes the original": a new REST id
                del store.messages[message.id]
                message.id = _new_id()
                store.messages[message.id] = message
            store.log(target.id, message.id)
            return _Reply(201, _message_json(message, None, "", ""), applied)
        if sub == "/permanentDelete" and m == "POST":
            store.log(message.folder_id, message.id, removed=True)
            del store.messages[message.id]
            return _Reply(204)
        if sub == "" and m == "DELETE":
            store.log(message.folder_id, message.id, removed=True)
            message.folder_id = store.folder("deleteditems").id
            store.log(message.folder_id, message.id)
            return _Reply(204)
        if sub == "/attachments/createUploadSession" and m == "POST":
            item = (call.json() or {}).get("AttachmentItem") or {}
            size = int(item.get("size") or 0)
            if item.get("attachmentType") != "file" or not item.get("name") or size <= 0:
                raise GraphFault(400, "ErrorInvalidRequest", "AttachmentItem needs attachmentType file, name and size.")
            if size > 150 * 1024 * 1024:
                raise GraphFault(
                    400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize", "Attachments are up to 150 MB."
                )
            token = secrets.token_urlsafe(16)
            self.state.uploads[token] = {
                "mailbox": store.address,
                "message": message.id,
                "name": str(item["name"]),
                "size": size,
                "type": str(item.get("contentType") or "application/octet-stream"),
                "data": bytearray(),
                "secret": secrets.token_urlsafe(24),
            }
            expires = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            # another path, pre-authenticated by its query as Graph's (on outlook.office.com): the credential is in the URL
            url = f"{self.state.url}/upload/{token}?authtoken={self.state.uploads[token]['secret']}"
            return _Reply(201, {"uploadUrl": url, "expirationDateTime": expires, "nextExpectedRanges": ["0-"]})
        if sub == "/send" and m == "POST":
            if message.folder_id != store.folder("drafts").id:
                raise GraphFault(400, "ErrorInvalidRequest", "Only drafts can be sent.")
            raw = message.raw
            if any(a.kind == "fileAttachment" and a.id.startswith("AAMkUPL") for a in message.attachments):
                mime = email.message_from_bytes(raw, policy=email.policy.default)
                assert isinstance(mime, EmailMessage)
                for uploaded in message.attachments:
                    if uploaded.id.startswith("AAMkUPL"):
                        kind, _, subtype = uploaded.content_type.partition("/")
                        mime.add_attachment(
                            uploaded.content,
                            maintype=kind,
                            subtype=subtype or "octet-stream",
                            filename=uploaded.name,
                        )
                raw = mime.as_bytes()
            self.state.outbox.append(raw)
            store.log(message.folder_id, message.id, removed=True)
            message.folder_id = store.folder("sentitems").id
            message.raw = raw
            store.log(message.folder_id, message.id)
            return _Reply(202)
        if sub == "/attachments" and m == "GET":
            return self.collection(call, [_attachment_json(a, content=True) for a in message.attachments])
        found = re.match(r"^/attachments/([^/]+)(/\$value)?$", sub)
        if found and m == "GET":
            attachment = next((a for a in message.attachments if a.id == found.group(1)), None)
            if attachment is None:
                raise GraphFault(404, "ErrorItemNotFound", "The attachment was not found.")
            if not found.group(2):
                return _Reply(200, _attachment_json(attachment, content=True))
            if attachment.kind == "referenceAttachment":
                raise GraphFault(405, "ErrorInvalidOperation", "A reference attachment has no content.")
            return _Reply(200, raw=attachment.content, headers={"Content-Type": "application/octet-stream"})
        raise GraphFault(400, "BadRequest", f"Unsupported message request {m} {sub}")

    def create_folder(self, store: MailboxStore, parent_id: str, call: _Call) -> _Reply:
        name = str((call.json() or {}).get("displayName") or "").strip()
        if not name:
            raise GraphFault(400, "ErrorInvalidRequest", "displayName is required.")
        if any(f.parent_id == parent_id and f.name.lower() == name.lower() for f in store.folders.values()):
            raise GraphFault(409, "ErrorFolderExists", "A folder with the specified name already exists.")
        return _Reply(201, _folder_json(store, store.add_folder(name, parent_id)))

    def send(self, store: MailboxStore, call: _Call) -> _Reply:
        if call.headers.get("content-type", "").startswith("text/plain"):
            try:
                raw = base64.b64decode(call.body, validate=True)
            except ValueError:
                raise GraphFault(
                    400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
                ) from None
        else:
            raise GraphFault(400, "BadRequest", "the stand-in takes MIME sendMail only")
        self.state.outbox.append(raw)
        sent = GraphMessage.from_mime(store.folder("sentitems").id, raw)
        sent.is_read = True
        store.messages[sent.id] = sent
        store.log(sent.folder_id, sent.id)
        return _Reply(202)

    def collection(
        self,
        call: _Call,
        rows: list[Any],
        *,
        render: Callable[[Any], dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> _Reply:
        top = min(int(call.args.get("$top", "10")), 1000)
        skip = int(call.args.get("$skip", "0"))
        offset = skip - SKIP_BIAS if skip >= SKIP_BIAS else skip
        page = rows[offset : offset + top]
        body: dict[str, Any] = {
            "@odata.context": f"{self.state.url}/v1.0/$metadata#{call.path.strip('/')}",
            "value": [render(r) if render else r for r in page],
        }
        if offset + top < len(rows):
            args = {**call.args, "$skip": str(offset + top + SKIP_BIAS)}
            query = "&".join(f"{quote(k, safe='$')}={quote(v, safe='')}" for k, v in args.items())
            body["@odata.nextLink"] = f"{self.state.url}/v1.0{quote(call.path)}?{query}"
        return _Reply(200, body, headers)

    def delta(self, store: MailboxStore, folder: _Folder, call: _Call, applied: dict[str, str]) -> _Reply:
        token = call.args.get("$deltatoken") or call.args.get("$skiptoken")
        since = 0
        if token:
            known = self.state.delta_tokens.get(token)
            if known is None or known[0] != store.address or known[1] != folder.id:
                raise GraphFault(410, "SyncStateNotFound", "The sync state generation is not found.")
            since = known[2]
        log = [c for c in store.changes.get(folder.id, []) if c.serial > since]
        latest: dict[str, _Change] = {}
        for change in log:
            latest[change.message_id] = change
        page_size = 1000
        found = re.search(r"odata\.maxpagesize=(\d+)", call.headers.get("prefer", ""))
        if found:
            page_size = int(found.group(1))
        changes = sorted(latest.values(), key=lambda c: c.serial)[:page_size]
        select = set(call.args["$select"].split(",")) if call.args.get("$select") else None
        rows = []
        for change in changes:
            message = store.messages.get(change.message_id)
            if change.removed or message is None or message.folder_id != folder.id:
                if not token:
                    continue  # a first round lists what is there, not what went before it
                rows.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": change.message_id,
                        "@removed": {"reason": "deleted"},
                    }
                )
            else:
                rows.append(_message_json(message, select, call.args.get("$expand", ""), ""))
        mark = changes[-1].serial if changes else since
        new_token = secrets.token_urlsafe(16)
        self.state.delta_tokens[new_token] = (store.address, folder.id, mark)
        more = len(latest) > len(changes)
        link_name = "@odata.nextLink" if more else "@odata.deltaLink"
        param = "$skiptoken" if more else "$deltatoken"
        body = {
            "@odata.context": f"{self.state.url}/v1.0/$metadata#Collection(message)",
            "value": rows,
            link_name: f"{self.state.url}/v1.0{quote(call.path)}?{param}={new_token}",
        }
        return _Reply(
            200, body, {**applied, **({"Preference-Applied": f"odata.maxpagesize={page_size}"} if found else {})}
        )


@contextmanager
def contextlib_nested(managers: list[Any]) -> Iterator[None]:
    from contextlib import ExitStack

    with ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


def _envelope(code: str, message: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "request-id": str(uuid.uuid4()),
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }


def _wsgi(state: GraphStandIn) -> Callable[..., Any]:
    router = _Router(state)

    @Request.application  # type: ignore[arg-type]
    def app(request: Request) -> Response:
        path = request.path
        if path.startswith("/upload/") and request.method == "PUT":
            return _upload(state, request)
        if path == "/_standin/stats":  # the bench's counters (a loopback test server: no auth)
            return Response(
                json.dumps(state.stats(reset=request.method == "POST")), 200, content_type="application/json"
            )
        if not path.startswith("/v1.0/"):
            return _response(state, GraphFault(404, "BadRequest", "Invalid version."))
        call = _Call(
            request.method,
            unquote(path[5:]),
            dict(request.args.items()),
            {k.lower(): v for k, v in request.headers.items()},
            request.get_data(),
        )
        with state.lock:
            state.requests.append((call.method, call.path))
            throttle = state.throttle_next > 0
            if throttle:
                state.throttle_next -= 1
                state.throttled += 1
        try:
            if throttle:
                raise GraphFault(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    {"Retry-After": "1"},
                )
            token = state._token(request.headers.get("Authorization"))
            reply = router.handle(call, token)
        except GraphFault as fault:
            return _response(state, fault)
        if reply.raw is not None:
            data = reply.raw
            content_type = reply.headers.pop("Content-Type", "application/octet-stream")
        else:
            data = json.dumps(reply.body).encode() if reply.body is not None else b""
            content_type = "application/json; odata.metadata=minimal"
        return _cut_or_send(
            state,
            Response(
                data,
                reply.status,
                headers={**reply.headers, "request-id": str(uuid.uuid4())},
                content_type=content_type,
            ),
        )

    return app


def _upload(state: GraphStandIn, request: Request) -> Response:
    """One chunk of an upload session: in order, ``Content-Range: bytes s-e/total``, under 4 MB, no token."""
    token = request.path.rsplit("/", 1)[-1]
    with state.lock:
        state.requests.append(("PUT", "/upload"))
        session = state.uploads.get(token)
        if request.headers.get("Authorization"):
            state.upload_authorizations += 1
            return _response(state, GraphFault(401, "InvalidAuthenticationToken", "An upload URL takes no token."))
        if session is None:
            return _response(state, GraphFault(404, "ErrorItemNotFound", "The upload session is not found or expired."))
        if request.args.get("authtoken") != session["secret"]:
            return _response(
                state, GraphFault(401, "InvalidAuthenticationToken", "The upload URL's authtoken is wrong.")
            )
        if state.refuse_uploads:
            return _response(state, GraphFault(500, "generalException", "An internal server error occurred."))
        found = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("Content-Range", ""))
        data = request.get_data()
        if found is None or int(found.group(3)) != session["size"]:
            return _response(state, GraphFault(400, "InvalidContentRange", "Content-Range is missing or wrong."))
        start, end = int(found.group(1)), int(found.group(2))
        if start != len(session["data"]) or end - start + 1 != len(data) or len(data) > 4 * 1024 * 1024:
            return _response(state, GraphFault(416, "InvalidRange", "The range is not the next expected one."))
        session["data"] += data
        if len(session["data"]) < session["size"]:
            body = {"nextExpectedRanges": [f"{len(session['data'])}-{session['size'] - 1}"]}
            return Response(json.dumps(body), 200, content_type="application/json")
        del state.uploads[token]
        store = state.mailbox(session["mailbox"])
        message = store.messages[session["message"]]
        attachment = GraphAttachment(session["name"], session["type"], bytes(session["data"]))
        attachment.id = "AAMkUPL" + attachment.id
        message.attachments.append(attachment)
    location = f"{state.url}/v1.0/users/{quote(session['mailbox'])}/messages/{message.id}/attachments/{attachment.id}"
    return Response(b"", 201, headers={"Location": location})


def _response(state: GraphStandIn, fault: GraphFault) -> Response:
    data = json.dumps(_envelope(fault.code, fault.message)).encode()
    return Response(data, fault.status, headers=fault.headers, content_type="application/json")


def _cut_or_send(state: GraphStandIn, response: Response) -> Response:
    data = response.get_data()
    with state.lock:
        state.bytes_out += len(data)
        cut = state.cut_next > 0
        if cut:
            state.cut_next -= 1
    if not cut:
        return response

    def broken() -> Iterator[bytes]:
        yield data[: max(1, len(data) // 3)]
        raise ConnectionAbortedError("the stand-in cuts this reply (a test asked for it)")

    cut_response = Response(broken(), response.status_code, headers=dict(response.headers))
    cut_response.headers["Content-Length"] = str(len(data))
    return cut_response


@contextmanager
def graph_server(folder: Path, introspect: Callable[[str], dict[str, Any]]) -> Iterator[GraphStandIn]:
    """Start the stand-in on a free loopback port with a certificate from its own CA."""
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder / "tls", ("localhost",))
    port = free_port()
    state = GraphStandIn(f"https://localhost:{port}", Path(certs.ca_file), introspect)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    server = make_server("127.0.0.1", port, _wsgi(state), threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """``python -m tests.servers.graph``: the demo's invoice bot on an Outlook session against this stand-in.

    It starts the test authorization server and the stand-in (not Microsoft Graph) on loopback, fills a
    mailbox with the demo's sample mail, and runs ``postroom.sandbox.demo.invoice_bot`` unchanged through
    Graph with an app's client credentials. ``--serve`` then keeps both running and prints a ``postroom
    connect`` line to try the CLI against them (Ctrl-C stops).
    """
    import argparse
    import signal
    import tempfile
    from contextlib import suppress

    import postroom
    from postroom import OAuth2ClientCredentials, Outlook, Variable
    from postroom.sandbox.demo import invoice_bot
    from postroom.sandbox.seed import sample_mailbox
    from tests.servers.oauth import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, oauth_server

    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="keep the servers running after the bot")
    args = parser.parse_args()
    user = "invoices@example.test"
    with (
        tempfile.TemporaryDirectory(prefix="graph-standin-") as folder,
        oauth_server(Path(folder) / "as") as authority,
        graph_server(Path(folder) / "graph", authority.introspect) as state,
    ):
        state.app_scope[CONFIDENTIAL_CLIENT] = {user}
        for path, raw, seen in sample_mailbox(user):
            state.deliver(user, raw, "Processed" if path == "Processed" else "Inbox", seen=seen)
        bundle = Path(folder) / "cas.pem"
        bundle.write_bytes(authority.ca_file.read_bytes() + state.ca_file.read_bytes())
        print(f"Microsoft Graph stand-in (not Microsoft Graph) at {state.url}; tokens from {authority.authority}")
        auth = OAuth2ClientCredentials(
            client_id=CONFIDENTIAL_CLIENT,
            client_secret=Variable("APP_SECRET"),
            authority=authority.authority,
            ca_file=str(bundle),
        )
        config = Outlook(mailbox=user, auth=auth, graph_url=state.url, ca_file=bundle)
        out = Path(folder) / "invoices"
        with postroom.connect("invoices", config, variables={"APP_SECRET": CONFIDENTIAL_SECRET}) as session:
            print(f"connected to {session.server} (Outlook, app-only); running the invoice bot")
            done = invoice_bot(session, out, print)
        replies = len(state.outbox)
        print(f"done: {len(done)} invoices saved, replied to ({replies} sent through Graph) and moved to Processed")
        if not args.serve:
            return
        print(
            f"try: postroom --var APP_SECRET={CONFIDENTIAL_SECRET} connect standin --protocol outlook "
            f"--mailbox {user} --graph-url {state.url} --ca-file {bundle} --auth oauth2-client-credentials "
            f"--client-id {CONFIDENTIAL_CLIENT} --client-secret var:APP_SECRET --authority {authority.authority} "
            f"--oauth-ca-file {bundle} --test",
            flush=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
