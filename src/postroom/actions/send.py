"""*Send*, *Reply*, *Reply all*, *Forward*: over SMTP, with or without a mailbox session."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import email
import email.policy
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast, overload

from postroom.actions._resolve import MessageRef, SessionRef, keys_of, require, resolve
from postroom.actions.compose import Draft, Importance, build_forward, build_message, build_reply, parse_recipients
from postroom.actions.folders import sent_folder
from postroom.actions.loop import get_message
from postroom.auth.base import Login
from postroom.config import EmailServer
from postroom.config.smtp_server import SmtpServer
from postroom.credentials import CredentialVault, ResolveContext
from postroom.errors import ConfigError, ConnectionLostError, DeliveryUnknownError, MailServerError, PostroomError
from postroom.logs import get_logger
from postroom.message.keys import MessageKey
from postroom.message.model import Address, Message
from postroom.message.raw import header_block_of
from postroom.session import Session
from postroom.transports.contract import Appends, ItemStatus, Mailbox, SavesDrafts, SubmitsMail
from postroom.transports.smtp import SendReceipt, SmtpSender, after_acceptance, before_handover, send_message
from postroom.validation import check_one_line

__all__ = [
    "CopyAfterSendError",
    "SavedDraft",
    "SendReceipt",
    "SendResult",
    "append",
    "forward",
    "reply",
    "save_draft",
    "send",
    "send_each",
]

_log = get_logger("postroom.send")


def _route(
    via: SessionRef | SmtpServer, variables: Mapping[str, str] | None, vault: CredentialVault | None
) -> tuple[SmtpServer | None, Login | None, Session | None]:
    """Where a message goes: an SMTP server, or (``server`` None) the session's own server (EWS)."""
    if isinstance(via, SmtpServer):
        context = ResolveContext(variables=dict(variables or {}), vault=vault)
        return via, (via.auth.resolve(context) if via.auth is not None else None), None
    session = resolve(via)
    if session.can(SubmitsMail):
        return None, session.resolve_login(), session
    if not isinstance(session.config, EmailServer):
        raise ConfigError(
            "via",
            f"a {session.label} session neither sends mail itself nor knows an SMTP server",
            hint="pass an SmtpServer(...) to send through",
        )
    try:
        server = SmtpServer.for_session(session.config)
    except PostroomError as exc:
        raise exc.with_context(session=session.name) from None
    return server, session.resolve_login(), session


def _sender(sender: str | None, login: Login | None, session: Session | None) -> Address:
    """``sender``, else the shared mailbox an EWS session opens, else the login's username."""
    mailbox = getattr(session.config, "mailbox", None) if session is not None else None  # a shared mailbox
    candidate = sender or mailbox or (login.username.reveal() if login is not None else "")
    found = parse_recipients("sender", candidate) if candidate and "@" in candidate else []
    if len(found) != 1:
        raise ConfigError("sender", "no sender address", hint="give sender='name@example.com'")
    return found[0]


def _deliver(
    draft: Draft, server: SmtpServer | None, login: Login | None, session: Session | None, save_to_sent: bool | str
) -> SendReceipt:
    if server is None:
        assert session is not None
        return _submit(draft, session, save_to_sent)
    folder = None
    if save_to_sent:  # found before sending: a copy that cannot be kept must not be found out after
        if session is None or not session.can(Appends):
            raise ConfigError(
                "save_to_sent",
                "needs a session that can store messages (IMAP)",
                hint="nothing was sent; pass save_to_sent=False, or send through an IMAP session",
            )
        folder = sent_folder(session, save_to_sent)
    pool = _connections.get()
    if pool is None:
        receipt = send_message(server, login, draft.message, draft.sender, draft.recipients)
    else:
        receipt = pool.sender(server, login).send(draft.message, draft.sender, draft.recipients)
    _log.info("sent %s to %d recipient(s) via %s", receipt.message_id, len(receipt.recipients), server.address)
    if folder is not None:
        assert session is not None
        try:
            session.call(append_once(folder, draft.message.as_bytes(), receipt.message_id), kind="append")
        except PostroomError as exc:
            raise CopyAfterSendError(receipt, exc) from exc
    return receipt


def _submit(draft: Draft, session: Session, save_to_sent: bool | str) -> SendReceipt:
    """Send through the session's server (EWS): Bcc travels in the MIME, which Exchange strips on delivery."""
    message = copy.copy(draft.message)
    shown = {a.address.lower() for name in ("To", "Cc") for a in parse_recipients(name, message.get_all(name, []))}
    hidden = [r for r in draft.recipients if r.lower() not in shown]
    if hidden:
        message["Bcc"] = ", ".join(hidden)
    if isinstance(save_to_sent, str):
        raise ConfigError("save_to_sent", "EWS keeps the copy in Sent Items", hint="pass save_to_sent=True or False")
    raw = message.as_bytes()
    hook = before_handover.get()
    if hook is not None:
        hook()
    try:  # never repeated after a drop (RETRY_POLICIES["submit"]): sending again could deliver twice
        session.call(
            lambda mailbox: cast(SubmitsMail, mailbox).submit(raw, save_copy=bool(save_to_sent)), kind="submit"
        )
    except ConnectionLostError as lost:
        raise DeliveryUnknownError(
            f"the connection dropped while sending {draft.message['Message-ID']}; it may have been sent",
            hint="look for that Message-ID in Sent Items before sending again",
        ) from lost
    accepted = after_acceptance.get()
    if accepted is not None:
        accepted()
    message_id = str(draft.message["Message-ID"])
    _log.info("sent %s to %d recipient(s) via %s", message_id, len(draft.recipients), session.server)
    return SendReceipt(message_id, draft.sender, tuple(draft.recipients), {}, session.server)


class CopyAfterSendError(MailServerError):
    """The message was sent; only keeping its copy in Sent failed. Do not send it again."""

    def __init__(self, receipt: SendReceipt, cause: PostroomError) -> None:
        super().__init__(
            f"{receipt.message_id} was sent to {len(receipt.recipients)} recipient(s), "
            f"but keeping a copy in Sent failed: {cause.problem}",
            hint="the mail went out: do not send it again; store the copy by hand if you need it",
        )
        self.receipt = receipt


@dataclass(frozen=True)
class SendResult:
    """What happened to one message of a bulk reply, forward or send.

    ``key`` is the message answered (None for a new one from :func:`send_each`). ``sent``
    says whether mail went out: a failure after sending (the copy in Sent) has
    ``sent=True`` and ``status="done"`` with the ``error``, so a bot never sends twice.
    """

    key: MessageKey | None
    status: ItemStatus
    receipt: SendReceipt | None = None
    error: PostroomError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @property
    def sent(self) -> bool:
        return self.receipt is not None


class _SmtpConnections:
    """The SMTP connections of one bulk call: one per server and login, reused for every message."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], SmtpSender] = {}

    def sender(self, server: SmtpServer, login: Login | None) -> SmtpSender:
        key = (server.address, login.username.reveal() if login is not None else "")
        found = self._open.get(key)
        if found is None:
            found = self._open[key] = SmtpSender(server, login)
        return found

    def close(self) -> None:
        for sender in self._open.values():
            sender.close()


#: The connections of the bulk call running in this thread or task (None: each message has its own).
_connections: contextvars.ContextVar[_SmtpConnections | None] = contextvars.ContextVar(
    "postroom_smtp_connections", default=None
)


@contextlib.contextmanager
def _one_connection_per_server() -> Iterator[None]:
    """While this block runs, messages sent to one SMTP server share one connection and one login."""
    if _connections.get() is not None:
        yield
        return
    pool = _SmtpConnections()
    token = _connections.set(pool)
    try:
        yield
    finally:
        _connections.reset(token)
        pool.close()


def _one_or_each(
    via: SessionRef,
    message: MessageRef | Iterable[MessageRef],
    answer: Callable[[Session, Message], SendReceipt],
) -> SendReceipt | list[SendResult]:
    """One message: its receipt (or the error). Several: a result each, carrying on past a failure."""
    if isinstance(message, Message | MessageKey | str):
        session = resolve(via)
        return answer(session, message if isinstance(message, Message) else get_message(session, message))
    return _each(via, message, answer)


def _each(
    via: SessionRef, messages: Iterable[MessageRef], answer: Callable[[Session, Message], SendReceipt]
) -> list[SendResult]:
    """``answer`` every message, carrying on past a failed one; one result per message, in order."""
    session = resolve(via)
    items = list(messages)
    results = []
    with _one_connection_per_server():
        for item, key in zip(items, keys_of(session, items), strict=True):  # every key checked before any is sent
            results.append(_answer_one(session, item, key, answer))
    return results


def _answer_one(
    session: Session, item: MessageRef, key: MessageKey, answer: Callable[[Session, Message], SendReceipt]
) -> SendResult:
    """One message of a bulk reply or forward: its result, never its exception."""
    message = item if isinstance(item, Message) else None
    try:
        if message is None:
            message = get_message(session, key)
        return SendResult(key, "done", answer(session, message))
    except CopyAfterSendError as exc:
        return SendResult(key, "done", exc.receipt, exc)
    except PostroomError as exc:
        _log.warning("answering %s failed: %s", key, exc)
        return SendResult(key, "failed", error=exc)


def append_once(folder: str, raw: bytes, message_id: str | None, *, seen: bool = True) -> Callable[[Mailbox], None]:
    """An APPEND the session may run twice (it retries after a dropped connection) that stores one copy.

    APPEND is not idempotent: when the connection drops after the server stored the
    message but before its OK arrived, a blind retry stores a second copy. The retry
    first looks for the message's Message-ID in the folder.
    """
    attempts = 0

    def store(mailbox: Mailbox) -> None:
        nonlocal attempts
        attempts += 1
        target = cast(Appends, mailbox)
        if attempts > 1 and message_id and target.has_message_id(folder, message_id):
            _log.info("the copy in %s was stored before the connection dropped; not storing it twice", folder)
            return
        target.append(folder, raw, seen=seen)

    return store


def send(
    via: SessionRef | SmtpServer,
    *,
    to: str | Iterable[str] | None = None,
    subject: str = "",
    body: str = "",
    cc: str | Iterable[str] | None = None,
    bcc: str | Iterable[str] | None = None,
    reply_to: str | Iterable[str] | None = None,
    html: bool = False,
    attachments: Iterable[str | Path] = (),
    importance: Importance = "normal",
    sender: str | None = None,
    save_to_sent: bool | str = False,
    variables: Mapping[str, str] | None = None,
    vault: CredentialVault | None = None,
    message_id: str | None = None,
) -> SendReceipt:
    """Send a new message through a session's SMTP server (or an explicit :class:`SmtpServer`).

    Recipients may be lists or strings separated by ``;`` or ``,``. A missing
    attachment file or a bad address fails before anything is sent. ``message_id``
    (``<unique@domain>``) is used instead of a new one (a bot's outbox sets it).
    """
    server, login, session = _route(via, variables, vault)
    draft = build_message(
        sender=_sender(sender, login, session),
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        body=body,
        html=html,
        attachments=attachments,
        importance=importance,
        message_id=message_id,
    )
    return _deliver(draft, server, login, session, save_to_sent)


@dataclass(frozen=True)
class SavedDraft:
    """A draft kept in the mailbox: its Message-ID and the folder it is in."""

    message_id: str
    folder: str
    recipients: tuple[str, ...]


def save_draft(
    session: SessionRef,
    *,
    to: str | Iterable[str] | None = None,
    subject: str = "",
    body: str = "",
    cc: str | Iterable[str] | None = None,
    bcc: str | Iterable[str] | None = None,
    reply_to: str | Iterable[str] | None = None,
    html: bool = False,
    attachments: Iterable[str | Path] = (),
    importance: Importance = "normal",
    sender: str | None = None,
) -> SavedDraft:
    """Compose a message as :func:`send` does and keep it as a draft, unsent, where mail clients show drafts
    (IMAP: the folder flagged ``\\Drafts``; EWS and Outlook: Drafts). Bcc stays in the draft."""
    resolved = resolve(session)
    require(resolved, SavesDrafts, "saving drafts")
    draft = build_message(
        sender=_sender(sender, resolved.resolve_login(), resolved),
        to=to,
        cc=cc,
        bcc=bcc,
        reply_to=reply_to,
        subject=subject,
        body=body,
        html=html,
        attachments=attachments,
        importance=importance,
    )
    message = copy.copy(draft.message)
    hidden = [a.address for a in parse_recipients("bcc", bcc)]
    if hidden:
        message["Bcc"] = ", ".join(hidden)
    raw = message.as_bytes()
    folder = resolved.call(lambda mailbox: cast(SavesDrafts, mailbox).save_draft(raw), kind="append")
    _log.info("saved draft %s in %s", message["Message-ID"], folder)
    return SavedDraft(str(message["Message-ID"]), folder, tuple(draft.recipients))


def append(session: SessionRef, folder: str, message: bytes | str | Path | EmailMessage, *, seen: bool = True) -> str:
    """Store ``message`` (an ``.eml`` path, its bytes, or an :class:`~email.message.EmailMessage`) in ``folder``
    as it is; return its Message-ID. Repeated after a dropped connection, it looks for that Message-ID first
    and stores no second copy."""
    resolved = resolve(session)
    require(resolved, Appends, "storing messages")
    check_one_line("folder", folder, hint="give the folder's name")
    if isinstance(message, EmailMessage):
        raw = message.as_bytes()
    elif isinstance(message, bytes):
        raw = message
    else:
        path = Path(message).expanduser()
        if not path.is_file():
            raise ConfigError(
                "message", f"{str(path)!r} is not a file", hint="give an .eml file, or the message's bytes"
            )
        raw = path.read_bytes()
    if not raw.strip():
        raise ConfigError("message", "is empty", hint="nothing was stored")
    found = header_block_of(raw)
    parsed = email.message_from_bytes(found, policy=email.policy.compat32)
    message_id = str(parsed.get("Message-ID") or "").strip()
    resolved.call(append_once(folder, raw, message_id or None, seen=seen), kind="append")
    return message_id


def send_each(
    via: SessionRef | SmtpServer,
    messages: Iterable[Mapping[str, Any]],
    *,
    variables: Mapping[str, str] | None = None,
    vault: CredentialVault | None = None,
) -> list[SendResult]:
    """Send several new messages, each given as :func:`send`'s keyword arguments (``to``, ``subject``, …).

    Carries on past a message that fails (a bad address, a missing attachment, a refused
    recipient) and returns one :class:`SendResult` per message, in order. A misspelt
    argument in any of them fails the whole call before anything is sent.
    """
    batch = [dict(message) for message in messages]
    accepted = set(inspect.signature(send).parameters) - {"via", "variables", "vault"}
    for number, message in enumerate(batch):
        unknown = sorted(set(message) - accepted)
        if unknown:
            raise ConfigError(
                f"messages[{number}].{unknown[0]}",
                "is not an argument of send(); nothing was sent",
                hint=f"the arguments are {', '.join(sorted(accepted))}",
            )
    results = []
    with _one_connection_per_server():
        for message in batch:
            try:
                results.append(SendResult(None, "done", send(via, variables=variables, vault=vault, **message)))
            except CopyAfterSendError as exc:
                results.append(SendResult(None, "done", exc.receipt, exc))
            except PostroomError as exc:
                _log.warning("sending %r failed: %s", message.get("subject", ""), exc)
                results.append(SendResult(None, "failed", error=exc))
    return results


@overload
def reply(  # type: ignore[overload-overlap]  # a str is one key, not an iterable of them
    via: SessionRef,
    message: Message | str,
    body: str,
    *,
    reply_all: bool = ...,
    html: bool = ...,
    attachments: Iterable[str | Path] = ...,
    quote: bool = ...,
    sender: str | None = ...,
    save_to_sent: bool | str = ...,
    message_id: str | None = ...,
) -> SendReceipt: ...


@overload
def reply(
    via: SessionRef,
    message: Iterable[MessageRef],
    body: str,
    *,
    reply_all: bool = ...,
    html: bool = ...,
    attachments: Iterable[str | Path] = ...,
    quote: bool = ...,
    sender: str | None = ...,
    save_to_sent: bool | str = ...,
) -> list[SendResult]: ...


def reply(
    via: SessionRef,
    message: MessageRef | Iterable[MessageRef],
    body: str,
    *,
    reply_all: bool = False,
    html: bool = False,
    attachments: Iterable[str | Path] = (),
    quote: bool = True,
    sender: str | None = None,
    save_to_sent: bool | str = False,
    message_id: str | None = None,
) -> SendReceipt | list[SendResult]:
    """Reply (or reply to all) to ``message``: threaded, one ``Re:``, the original quoted, never to ourselves.

    Given several messages (a list, a loop), it answers each, carries on past one that
    fails, and returns a :class:`SendResult` per message in order; given one, it returns
    the receipt (or raises).
    """
    attachments = tuple(attachments)

    def answer(session: Session, original: Message) -> SendReceipt:
        server, login, routed = _route(session, None, None)
        me = _sender(sender, login, routed)
        draft = build_reply(
            original,
            sender=me,
            body=body,
            reply_all=reply_all,
            html=html,
            attachments=attachments,
            quote=quote,
            message_id=message_id,
        )
        return _deliver(draft, server, login, routed, save_to_sent)

    return _one_or_each(via, message, answer)


@overload
def forward(  # type: ignore[overload-overlap]  # a str is one key, not an iterable of them
    via: SessionRef,
    message: Message | str,
    to: str | Iterable[str],
    body: str = ...,
    *,
    cc: str | Iterable[str] | None = ...,
    bcc: str | Iterable[str] | None = ...,
    as_attachment: bool = ...,
    sender: str | None = ...,
    save_to_sent: bool | str = ...,
    message_id: str | None = ...,
) -> SendReceipt: ...


@overload
def forward(
    via: SessionRef,
    message: Iterable[MessageRef],
    to: str | Iterable[str],
    body: str = ...,
    *,
    cc: str | Iterable[str] | None = ...,
    bcc: str | Iterable[str] | None = ...,
    as_attachment: bool = ...,
    sender: str | None = ...,
    save_to_sent: bool | str = ...,
) -> list[SendResult]: ...


def forward(
    via: SessionRef,
    message: MessageRef | Iterable[MessageRef],
    to: str | Iterable[str],
    body: str = "",
    *,
    cc: str | Iterable[str] | None = None,
    bcc: str | Iterable[str] | None = None,
    as_attachment: bool = False,
    sender: str | None = None,
    save_to_sent: bool | str = False,
    message_id: str | None = None,
) -> SendReceipt | list[SendResult]:
    """Forward ``message`` inline with its attachments, or as an attached ``.eml``.

    Given several messages, it forwards each, carries on past one that fails, and returns a
    :class:`SendResult` per message in order; given one, it returns the receipt (or raises).
    """
    recipients = [to] if isinstance(to, str) else list(to)

    def answer(session: Session, original: Message) -> SendReceipt:
        server, login, routed = _route(session, None, None)
        draft = build_forward(
            original,
            sender=_sender(sender, login, routed),
            to=recipients,
            body=body,
            cc=cc,
            bcc=bcc,
            as_attachment=as_attachment,
            message_id=message_id,
        )
        return _deliver(draft, server, login, routed, save_to_sent)

    return _one_or_each(via, message, answer)
