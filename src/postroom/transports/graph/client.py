"""One HTTPS connection pool to Microsoft Graph for one session: tokens, the governor, throttling, ``$batch``.

- Every request (and every request inside a ``$batch``) carries ``Prefer: IdType="ImmutableId"``,
  so a message's id survives a move.
- Every request takes its slot from the mailbox's :class:`~postroom.transports.graph.governor.Governor`;
  ``429``/``503``/``504`` and throttling codes are waited out (``Retry-After``) up to ``max_throttle_wait``,
  inside a ``$batch`` too, where only the throttled requests are sent again.
- A ``401`` renews the token once. Links Graph returns (``@odata.nextLink``) are followed verbatim,
  and only to Graph's own host: a token never goes anywhere else.
- Network failures become postroom errors; a connection that drops mid-request is
  :class:`~postroom.errors.ConnectionLostError`, so the session reconnects.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from postroom.auth.base import TokenLogin
from postroom.config.outlook import Outlook
from postroom.errors import (
    CertificateError,
    ConnectionLostError,
    PostroomError,
    ProtocolError,
    ServerBusyError,
    ServerTimeoutError,
    ServerUnreachableError,
)
from postroom.logs import get_logger
from postroom.transports.graph.errors import THROTTLE_CODES, AccessContext, GraphFault, fault_of, postroom_error
from postroom.transports.graph.governor import Governor
from postroom.transports.graph.tokens import granted
from postroom.transports.tls import client_context

__all__ = ["BATCH_LIMIT", "IMMUTABLE_IDS", "GraphClient", "SubReply", "SubRequest"]

_log = get_logger("postroom.outlook")
#: Requests per ``$batch`` (Graph's limit).
BATCH_LIMIT = 20
IMMUTABLE_IDS = 'IdType="ImmutableId"'
_THROTTLE_STATUSES = frozenset({429, 503, 504})
#: Bytes per upload-session request: a multiple of 320 KiB under Graph's 4 MB (its large-attachment guide).
UPLOAD_CHUNK = 10 * 320 * 1024
_FIRST_BACKOFF = 1.0
_MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class SubRequest:
    """One request of a ``$batch``: the path under ``/v1.0`` (``/me/messages/…``), and a JSON body."""

    method: str
    url: str
    body: Any = None
    #: Headers of this request (its ``Prefer`` replaces the default one, which asks for immutable ids).
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class SubReply:
    """One response of a ``$batch``."""

    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _HideQueries(logging.Filter):
    """httpx logs each request's URL at INFO: keep the path, hide the query (an upload session's URL carries its
    own credential there, and a listing's filter carries what the bot searched for)."""

    _QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self._QUERY.sub(r"\1?***", message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_hide_queries = _HideQueries()


class GraphClient:
    """Requests to Graph for one session; not thread-safe (the session serialises calls)."""

    def __init__(self, config: Outlook, login: TokenLogin, governor: Governor) -> None:
        self.config = config
        self.login = login
        self.governor = governor
        self.root = f"{config.base_url}/v1.0"
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            if _hide_queries not in logger.filters:
                logger.addFilter(_hide_queries)
        self._origin = urlsplit(config.base_url)._replace(path="", query="", fragment="").geturl()
        verify: ssl.SSLContext = client_context(verify=config.verify_certificate, ca_file=config.ca_file)
        self._http = httpx.Client(
            verify=verify,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            headers={"Prefer": IMMUTABLE_IDS, "Accept": "application/json"},
            follow_redirects=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        #: HTTP requests sent and reply bytes read (``$batch`` counts once), for the bench and Test connection.
        self.requests = 0
        self.bytes_in = 0
        #: Set when a request's connection dropped: the session then reconnects (under its policy).
        self.broken = False
        self._token = login.tokens.access_token()

    def close(self) -> None:
        self._http.close()

    def _lost(self, exc: httpx.HTTPError, doing: str) -> Exception:
        error = _network_error(exc, self.config, doing)
        if isinstance(error, ConnectionLostError):
            self.broken = True
        return error

    @property
    def access(self) -> AccessContext:
        return AccessContext(
            app_only=self.config.auth.kind == "oauth2-client-credentials",
            mailbox=self.config.mailbox,
            granted=granted(self.login.tokens.scopes, self._token),
        )

    # -- requests ------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        """``path`` under ``/v1.0``, or a link Graph gave (it must be Graph's own origin)."""
        if path.startswith("https://"):
            parts = urlsplit(path)
            if parts._replace(path="", query="", fragment="").geturl().lower() != self._origin.lower():
                raise ProtocolError(f"Graph gave a link to another host ({parts.hostname}); it was not followed")
            return path
        return self.root + path

    def json(
        self,
        method: str,
        path: str,
        *,
        doing: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        weight: int = 1,
    ) -> Any:
        """Send one request; the reply's JSON (None for an empty reply). A Graph error raises its postroom error."""
        with self._exchange(method, path, doing, params, body, content, headers, weight) as response:
            try:
                data = response.read()
            except httpx.HTTPError as exc:
                raise self._lost(exc, doing) from None
        self.bytes_in += len(data)
        if not data:
            return None
        try:
            return json.loads(data)
        except ValueError:
            return data

    def stream(self, path: str, write: Callable[[bytes], object], *, doing: str) -> int:
        """GET ``path`` and hand the reply's bytes to ``write`` as they come; the byte count."""
        total = 0
        with self._exchange("GET", path, doing, None, None, None, {"Accept": "*/*"}, 1) as response:
            try:
                for chunk in response.iter_bytes(1 << 16):
                    write(chunk)
                    total += len(chunk)
            except httpx.HTTPError as exc:
                raise self._lost(exc, doing) from None
        self.bytes_in += total
        return total

    @contextmanager
    def _exchange(
        self,
        method: str,
        path: str,
        doing: str,
        params: Mapping[str, str] | None,
        body: Any,
        content: bytes | None,
        headers: Mapping[str, str] | None,
        weight: int,
    ) -> Iterator[httpx.Response]:
        """The successful response of ``method path``, streaming, after renewals and throttling waits."""
        url = self._url(path)
        deadline = time.monotonic() + self.config.max_throttle_wait
        renewed = False
        backoff = _FIRST_BACKOFF
        while True:
            sent_headers = {"Authorization": f"Bearer {self._token.reveal()}", **(headers or {})}
            request = self._http.build_request(
                method, url, params=params, json=body, content=content, headers=sent_headers
            )
            with self.governor.slot(weight):
                self.requests += 1
                try:
                    response = self._http.send(request, stream=True)
                except httpx.HTTPError as exc:
                    raise self._lost(exc, doing) from None
                try:
                    if response.is_success:
                        yield response
                        return
                    data = response.read()
                finally:
                    response.close()
            self.bytes_in += len(data)
            fault = fault_of(response.status_code, _parsed(data), dict(response.headers))
            if response.status_code == 401 and not renewed:
                renewed = True
                self._token = self.login.tokens.renew(self._token)
                continue
            if response.status_code in _THROTTLE_STATUSES or fault.code in THROTTLE_CODES:
                wait = _retry_after(response.headers) or backoff
                backoff = min(backoff * 2, _MAX_BACKOFF)
                if time.monotonic() + wait > deadline:
                    raise _throttled(fault, doing, wait)
                _log.info("Graph throttled %s (%s): waiting %.1f s", doing, fault.code, wait)
                self.governor.hold_off(wait)
                continue
            raise postroom_error(fault, doing=doing, access=self.access)

    def upload(self, url: str, data: bytes, *, doing: str) -> None:
        """Send ``data`` to an upload session's pre-authenticated URL in ordered chunks (no token goes with it)."""
        if not url.startswith("https://"):
            raise ProtocolError(f"{doing}: Graph gave an upload URL that is not https; nothing was uploaded")
        total = len(data)
        for start in range(0, total, UPLOAD_CHUNK):
            chunk = data[start : start + UPLOAD_CHUNK]
            headers = {"Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}"}
            with self.governor.slot():
                self.requests += 1
                try:
                    response = self._http.put(url, content=chunk, headers=headers)
                except httpx.HTTPError as exc:
                    raise self._lost(exc, doing) from None
            if not response.is_success:
                fault = fault_of(response.status_code, _parsed(response.content), dict(response.headers))
                raise postroom_error(fault, doing=doing, access=self.access)

    def batch(self, requests: list[SubRequest], *, doing: str) -> list[SubReply]:
        """Send ``requests`` in ``$batch`` calls of 20; one reply per request, in order. A throttled
        request is sent again after its ``Retry-After``; one still throttled at the deadline replies 429."""
        replies: list[SubReply | None] = [None] * len(requests)
        pending = list(range(len(requests)))
        deadline = time.monotonic() + self.config.max_throttle_wait
        backoff = _FIRST_BACKOFF
        while pending:
            throttled: list[int] = []
            wait = 0.0
            for start in range(0, len(pending), BATCH_LIMIT):
                chunk = pending[start : start + BATCH_LIMIT]
                payload = {"requests": [_sub_request(index, requests[index]) for index in chunk]}
                answer = self.json("POST", "/$batch", doing=doing, body=payload, weight=len(chunk))
                for index, sub in _sub_replies(answer, chunk, doing):
                    code = fault_of(sub.status, sub.body).code if not sub.ok else ""
                    replies[index] = sub
                    if sub.status in _THROTTLE_STATUSES or code in THROTTLE_CODES:
                        throttled.append(index)
                        wait = max(wait, _retry_after(sub.headers) or backoff)
            if throttled:
                backoff = min(backoff * 2, _MAX_BACKOFF)
                if time.monotonic() + wait > deadline:
                    break  # those keep their 429 reply: the caller reports them failed, throttled
                self.governor.hold_off(wait)
            pending = throttled
        return [reply if reply is not None else SubReply(500, None, {}) for reply in replies]

    def fault(self, reply: SubReply, doing: str) -> PostroomError:
        """The postroom error for a failed ``$batch`` reply."""
        fault = fault_of(reply.status, reply.body, dict(reply.headers))
        if reply.status in _THROTTLE_STATUSES or fault.code in THROTTLE_CODES:
            return _throttled(fault, doing, _retry_after(reply.headers))
        return postroom_error(fault, doing=doing, access=self.access)


def _sub_request(index: int, request: SubRequest) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "id": str(index),
        "method": request.method,
        "url": request.url,
        "headers": {"Prefer": IMMUTABLE_IDS, **(request.headers or {})},
    }
    if request.body is not None:
        sub["body"] = request.body
        sub["headers"]["Content-Type"] = "application/json"
    return sub


def _sub_replies(answer: Any, chunk: list[int], doing: str) -> Iterator[tuple[int, SubReply]]:
    responses = answer.get("responses") if isinstance(answer, dict) else None
    if not isinstance(responses, list):
        raise ProtocolError(f"{doing}: Graph's $batch reply has no responses")
    seen = set()
    for item in responses:
        try:
            index = int(item["id"])
            status = int(item["status"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"{doing}: Graph's $batch reply has a response without id or status") from None
        if index not in chunk or index in seen:
            raise ProtocolError(f"{doing}: Graph's $batch reply answers request {index}, which was not asked")
        seen.add(index)
        headers = item.get("headers") if isinstance(item.get("headers"), dict) else {}
        yield index, SubReply(status, item.get("body"), {str(k).lower(): str(v) for k, v in headers.items()})
    missing = [index for index in chunk if index not in seen]
    if missing:
        raise ProtocolError(f"{doing}: Graph's $batch reply left {len(missing)} request(s) unanswered")


def _parsed(data: bytes) -> Any:
    try:
        return json.loads(data) if data else None
    except ValueError:
        return None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, min(float(value), 3600.0)) if value is not None else None
    except ValueError:
        return None


def _throttled(fault: GraphFault, doing: str, wait: float | None) -> ServerBusyError:
    support = f" ({fault.support})" if fault.support else ""
    return ServerBusyError(
        f"{doing}: Graph is throttling this mailbox ({fault.code}){support}",
        retry_after=wait,
        hint="wait and try again; raise max_throttle_wait to wait longer, or run fewer bots on this mailbox",
    )


def _network_error(exc: httpx.HTTPError, config: Outlook, doing: str) -> Exception:
    host = config.server_host
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, httpx.ConnectTimeout):
        return ServerTimeoutError(
            f"no answer from {host} within {config.connect_timeout:g} s", hint="check the host and the firewall"
        )
    if isinstance(exc, httpx.ConnectError):
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return CertificateError(
                f"the certificate of {host} is not trusted",
                hint="give ca_file= with the CA that signed it (a TLS-inspecting proxy's CA, for one)",
            )
        return ServerUnreachableError(f"cannot reach {host}: {exc}", hint="check the network path and graph_url")
    if isinstance(exc, httpx.TimeoutException):
        return ServerTimeoutError(
            f"{doing}: no answer from {host} within {config.read_timeout:g} s", hint="raise read_timeout"
        )
    return ConnectionLostError(f"{doing}: the connection to {host} dropped ({type(exc).__name__})")
