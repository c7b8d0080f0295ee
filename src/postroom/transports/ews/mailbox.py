"""EWS (Exchange Web Services) behind the :class:`~postroom.transports.contract.Mailbox` contract, on exchangelib.

- Folders are named as on IMAP: paths under the mailbox root with ``/`` between
  levels, the inbox as ``INBOX`` — so a bot runs unchanged on either protocol.
- A message's key is its EWS item id (a move gives a new one, returned per item).
- Search: read status, subject "contains" (ASCII, not regex) and the date range
  become a FindItem restriction; everything else — regular expressions, senders —
  is checked on the client on the fetched fields, as on IMAP.
- A loop fetches typed fields and the body of a chunk of messages in one GetItem
  (no MIME, no attachments); attachments come with GetAttachment only when saved;
  ``raw`` is the item's MIME content.
- Bulk calls (mark, move, delete) go in batches and return one result per item.
- A bot watches a folder through a pull subscription (:mod:`.watching`): an unchanged folder costs one
  GetEvents.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import functools
import threading
from collections.abc import Callable, Iterable
from email.message import EmailMessage
from typing import Any, cast

from exchangelib import UTC, EWSDateTime, Q
from exchangelib import Folder as EwsFolder
from exchangelib import Message as EwsMessage
from exchangelib.attachments import AttachmentId
from exchangelib.items import HARD_DELETE
from exchangelib.services import GetAttachment

from postroom.auth.base import Login
from postroom.config.ews import Ews
from postroom.errors import ProtocolError, SessionError
from postroom.filters import MessageFilter, server_term
from postroom.logs import get_logger
from postroom.message.keys import KeyList, KeyRun
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.contract import Folder, ItemResult, ServerReport
from postroom.transports.ews.client import EwsClient
from postroom.transports.ews.items import SUMMARY_FIELDS, body_of, header_block_of, summary_of
from postroom.transports.ews.keys import EwsKey
from postroom.transports.ews.watching import FolderEvents
from postroom.transports.ews.xml import INVALID_XML_CHARS, clean_text, replace_invalid
from postroom.transports.imap.folders import folder_pattern, user_path
from postroom.transports.outlook_flags import outlook_flags

__all__ = ["EwsMailbox"]

_log = get_logger("postroom.ews")
#: PidTagFlagStatus (MS-OXOFLAG) of a message flagged for follow-up.
_FLAG_FOLLOW_UP = 2
#: Items per GetItem / MoveItem / UpdateItem / DeleteItem request.
BATCH = 100
#: Item ids per FindItem page.
PAGE = 1000


class EwsMailbox:
    """One EWS connection to one mailbox (own or shared)."""

    def __init__(self, config: Ews, login: Login) -> None:
        self.config = config
        self._login = login
        self._client: EwsClient | None = None
        self._folders: dict[str, Any] | None = None
        self._events = FolderEvents(self._run)

    # -- connection -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.account is not None

    def open(self) -> None:
        client = EwsClient(self.config, self._login)
        try:
            client.open()
        except BaseException:
            client.close()
            raise
        self._client = client
        self._folders = None

    def close(self) -> None:
        if self._client is not None:
            self._events.close()
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _open_client(self) -> EwsClient:
        if self._client is None or self._client.account is None:
            raise SessionError("the EWS connection is closed", hint="connect first")
        return self._client

    def _account(self) -> Any:
        return self._open_client().account

    def _run(self, call: Callable[[], Any]) -> Any:
        return self._open_client().call(call, "command")

    # -- watching (pull notifications) ------------------------------------------------------

    def folder_state(self, folder: str) -> str:
        return self._events.state(*self._folder(folder))

    def wait_for_change(self, folder: str, timeout: float, stop: threading.Event | None = None) -> bool:
        return self._events.wait(*self._folder(folder), timeout, stop or threading.Event())

    def noop(self) -> None:
        account = self._account()
        self._run(lambda: account.inbox.refresh())  # GetFolder

    def report(self) -> ServerReport:
        account = self._account()
        version = self._run(lambda: account.version)
        build = getattr(version, "build", None)
        return ServerReport(
            protocol="ews",
            address=self.config.address if self.config.url else account.protocol.service_endpoint,
            greeting=f"Exchange {build} ({version.api_version})" if build else str(version.api_version),
            tls_version=None,
            cipher=None,
            capabilities=(
                str(version.api_version),
                f"access={self.config.effective_access_type}",
                f"auth={self.config.auth.kind}",
            ),
            folder_count=len(self.folders()),
            connect_steps="HTTPS, login, mailbox",
            probe="GetFolder",
            https=True,
        )

    # -- folders --------------------------------------------------------------------------

    def _folder_map(self) -> dict[str, Any]:
        """Path → exchangelib folder, for every mail folder under the mailbox root (one FindFolder)."""
        if self._folders is None:
            account = self._account()

            def walk() -> dict[str, Any]:
                root = account.msg_folder_root
                found = list(root.walk())
                by_id = {f.id: f for f in found}
                paths: dict[str, Any] = {}
                for folder in found:
                    names, current = [], folder
                    while current is not None:
                        names.append(current.name)
                        parent = getattr(current, "parent_folder_id", None)
                        current = by_id.get(parent.id) if parent is not None else None
                    paths[user_path("/".join(reversed(names)))] = folder
                return paths

            self._folders = self._run(walk)
        return self._folders

    def _folder(self, path: str) -> tuple[str, Any]:
        """The folder ``path`` names (case-insensitive): its name as listed, and the exchangelib folder."""
        for attempt in range(2):
            found = self._find_folder(path)
            if found is not None:
                return found
            if attempt == 0:  # created since the listing? list once more
                self._forget_folders()
        shown = ", ".join(sorted(self._folder_map())[:30])
        raise ProtocolError(f"no folder {path!r} in this mailbox", hint=f"folders: {shown}")

    def create_folder(self, name: str) -> Folder:
        """CreateFolder for each level of ``name`` that is not there yet; an existing folder is returned as is."""
        account = self._account()
        levels = [level for level in user_path(name).split("/") if level]
        parent = None
        for depth in range(1, len(levels) + 1):
            path = "/".join(levels[:depth])
            found = self._find_folder(path)
            if found is None:
                under = parent if parent is not None else account.msg_folder_root
                self._run(lambda p=under, n=levels[depth - 1]: EwsFolder(parent=p, name=n).save())  # type: ignore[misc]
                self._forget_folders()
                found = self._find_folder(path)
                if found is None:
                    raise ProtocolError(f"the server did not show folder {path!r} after creating it")
            parent = found[1]
        return Folder(name=self._folder(name)[0], delimiter="/")

    def rename_folder(self, name: str, new_name: str) -> Folder:
        """MoveFolder when the levels above change, then UpdateFolder of its display name."""
        path, folder = self._folder(name)
        levels = [level for level in user_path(new_name).split("/") if level]
        parent_path = "/".join(levels[:-1])
        if parent_path.casefold() != path.rpartition("/")[0].casefold():
            target = self._folder(parent_path)[1] if parent_path else self._account().msg_folder_root
            self._run(lambda: folder.move(target))
        if levels[-1] != path.rpartition("/")[2]:
            folder.name = levels[-1]
            self._run(lambda: folder.save(update_fields=["name"]))
        self._forget_folders()
        return Folder(name=self._folder(new_name)[0], delimiter="/")

    def delete_folder(self, name: str) -> None:
        """DeleteFolder (HardDelete), with the items in it."""
        folder = self._folder(name)[1]
        self._run(lambda: folder.delete(delete_type=HARD_DELETE))
        self._forget_folders()

    def _find_folder(self, path: str) -> tuple[str, Any] | None:
        wanted = user_path(path).casefold()
        return next(((n, f) for n, f in self._folder_map().items() if n.casefold() == wanted), None)

    def _forget_folders(self) -> None:
        self._folders = None
        self._account().root.clear_cache()  # exchangelib caches the folder tree too

    def folders(self, pattern: str = "*") -> list[Folder]:
        """Folders matching ``pattern``: ``*`` any depth, ``%`` one level, case-insensitive."""
        regex = folder_pattern(pattern)
        return [Folder(name=name, delimiter="/") for name in sorted(self._folder_map()) if regex.match(name)]

    def _folders_for(self, filter_: MessageFilter) -> list[str]:
        if any(ch in filter_.folder for ch in "*%"):
            found = [f.name for f in self.folders(filter_.folder.replace("*", "%"))]
            if not found:
                raise ProtocolError(f"no folder matches {filter_.folder!r}")
        else:
            found = [self._folder(filter_.folder)[0]]
        if filter_.include_subfolders:
            for base in list(found):
                prefix = base.casefold() + "/"
                found += [n for n in sorted(self._folder_map()) if n.casefold().startswith(prefix)]
        return list(dict.fromkeys(found))

    # -- search and fetch -----------------------------------------------------------------

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        runs: list[KeyRun] = []
        restriction = _restriction(filter_)
        order = "-datetime_received" if filter_.order == "newest" else "datetime_received"
        for path in self._folders_for(filter_):
            folder = self._folder(path)[1]

            def find(f: Any = folder) -> tuple[str, ...]:
                query = f.filter(restriction) if restriction is not None else f.all()
                query.page_size = PAGE
                return tuple(query.order_by(order).values_list("id", flat=True))

            runs.append(KeyList(path, [EwsKey(path, item_id) for item_id in self._run(find)]))
        return runs

    def _fetch(self, keys: list[EwsKey], fields: Iterable[str]) -> list[tuple[EwsKey, Any]]:
        """Items of ``keys`` (one folder) with ``fields``; gone ones skipped."""
        if not keys:
            return []
        account, folder = self._account(), self._folder(keys[0].folder)[1]
        ids = [(key.item_id, None) for key in keys]

        def fetch() -> list[Any]:
            return list(account.fetch(ids=ids, folder=folder, only_fields=list(fields), chunk_size=BATCH))

        found = []
        for key, item in zip(keys, self._run(fetch), strict=True):
            if isinstance(item, Exception):
                _log.info("%s: %s", key, item)
                continue
            found.append((key, item))
        return found

    def summaries(self, keys: list[EwsKey], *, bodies: bool = False) -> list[MessageSummary]:
        return [summary_of(item, key.folder) for key, item in self._fetch(keys, SUMMARY_FIELDS)]

    def bodies(self, summaries: list[MessageSummary]) -> dict[tuple[EwsKey, str], bytes]:
        """The text bodies: GetItem brings each one with its summary, so they are at hand already."""
        found: dict[tuple[EwsKey, str], bytes] = {}
        missing: dict[EwsKey, str] = {}
        for summary in summaries:
            key = cast(EwsKey, summary.key)
            section = _body_section(summary)
            if summary.body_start is not None:
                found[(key, section)] = summary.body_start
            else:
                missing[key] = section
        found.update(((key, missing[key]), body_of(item)[0]) for key, item in self._fetch(list(missing), ("body",)))
        return found

    def part_content(self, key: EwsKey, part: MimePart) -> bytes:
        if part.handle is None:
            found = self._fetch([key], ("body",))
            if not found:
                raise ProtocolError(f"message {key} is gone from the server")
            return body_of(found[0][1])[0]
        chunks: list[bytes] = []
        self.stream_part(key, part, chunks.append)
        return b"".join(chunks)

    def stream_part(self, key: EwsKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        attachment_id = part.handle
        if attachment_id is None:
            data = self.part_content(key, part)
            write(data)
            return len(data)
        account = self._account()
        if part.is_message:
            data = self._run(lambda: _item_attachment_mime(account, attachment_id))
            write(data)
            return len(data)

        def stream() -> int:
            total = 0
            service = GetAttachment(account=account)
            for chunk in service.stream_file_content(attachment_id=AttachmentId(id=attachment_id)):
                write(chunk)
                total += len(chunk)
            return total

        return int(self._run(stream))

    def header_block(self, key: EwsKey) -> bytes:
        found = self._fetch([key], ("headers", *SUMMARY_FIELDS[:-2]))
        if not found:
            raise ProtocolError(f"message {key} is gone from the server")
        item = found[0][1]
        if not item.headers:
            return header_block_of(item)[0]
        lines = []
        for header in item.headers:
            name, _ = clean_text(header.name)
            value, _ = clean_text(header.value)
            lines.append(f"{name}: {value}\r\n".encode("utf-8", "surrogatepass"))
        return b"".join(lines)

    def raw(self, key: EwsKey) -> bytes:
        found = self._fetch([key], ("mime_content",))
        if not found:
            raise ProtocolError(f"message {key} is gone from the server")
        return _mime_bytes(found[0][1].mime_content)

    # -- changes ----------------------------------------------------------------------------

    def _bulk(
        self, keys: list[EwsKey], call: Callable[[list[tuple[str, None]]], list[Any]], target: str | None = None
    ) -> list[ItemResult]:
        results = []
        for start in range(0, len(keys), BATCH):
            batch = keys[start : start + BATCH]
            ids: list[tuple[str, None]] = [(k.item_id, None) for k in batch]
            outcomes = self._run(functools.partial(call, ids))
            for key, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    results.append(_failed(key, outcome))
                elif target is not None:
                    new_id = outcome[0] if isinstance(outcome, tuple) else getattr(outcome, "id", None)
                    new_key = EwsKey(target, new_id) if new_id else None
                    results.append(ItemResult(key, "done", new_key=new_key))
                else:
                    results.append(ItemResult(key, "done"))
        return results

    def set_seen(self, keys: list[EwsKey], seen: bool) -> list[ItemResult]:
        account = self._account()

        def update(ids: list[tuple[str, None]]) -> list[Any]:
            items = [(EwsMessage(account=account, id=i, changekey=c, is_read=seen), ("is_read",)) for i, c in ids]
            return list(
                account.bulk_update(items, conflict_resolution="AlwaysOverwrite", message_disposition="SaveOnly")
            )

        return self._bulk(keys, update)

    def set_flags(self, keys: list[EwsKey], flags: tuple[str, ...], on: bool) -> list[ItemResult]:
        """``\\Flagged`` is Outlook's follow-up flag (PidTagFlagStatus 2, removed to unflag); other keywords
        are Outlook categories (read first, so the others a message has are kept)."""
        change = outlook_flags(flags, "Exchange")
        account = self._account()
        current: dict[str, list[str]] = {}
        if change.categories:
            for key, item in self._fetch(keys, ("categories",)):
                current[key.item_id] = list(item.categories or ())

        def update(ids: list[tuple[str, None]]) -> list[Any]:
            items = []
            for item_id, changekey in ids:
                fields: dict[str, Any] = {}
                if change.follow_up:
                    fields["postroom_flag_status"] = _FLAG_FOLLOW_UP if on else None
                if change.categories:
                    fields["categories"] = change.merged(current.get(item_id, []), on) or None
                items.append((EwsMessage(account=account, id=item_id, changekey=changekey, **fields), tuple(fields)))
            return list(
                account.bulk_update(items, conflict_resolution="AlwaysOverwrite", message_disposition="SaveOnly")
            )

        return self._bulk(keys, update)

    def move(self, keys: list[EwsKey], folder: str) -> list[ItemResult]:
        account, (path, target) = self._account(), self._folder(folder)
        return self._bulk(keys, lambda ids: list(account.bulk_move(ids, to_folder=target)), target=path)

    def delete(self, keys: list[EwsKey]) -> list[ItemResult]:
        account = self._account()
        return self._bulk(keys, lambda ids: list(account.bulk_delete(ids, delete_type=HARD_DELETE)))

    def append(self, folder: str, raw: bytes, *, seen: bool = True) -> None:
        account, target = self._account(), self._folder(folder)[1]
        self._run(lambda: EwsMessage(account=account, folder=target, mime_content=raw, is_read=seen).save())

    def save_draft(self, raw: bytes) -> str:
        """CreateItem (SaveOnly) in the Drafts folder."""
        account = self._account()
        drafts = account.drafts
        self._run(lambda: EwsMessage(account=account, folder=drafts, mime_content=_cleaned(raw), is_read=True).save())
        return next((path for path, folder in self._folder_map().items() if folder.id == drafts.id), "Drafts")

    def has_message_id(self, folder: str, message_id: str) -> bool:
        target = self._folder(folder)[1]
        return bool(self._run(lambda: target.filter(message_id=message_id).exists()))

    def submit(self, raw: bytes, *, save_copy: bool) -> None:
        """Send a MIME message through the server (CreateItem SendAndSaveCopy, or SendOnly)."""
        account = self._account()
        message = EwsMessage(account=account, folder=account.sent if save_copy else None, mime_content=_cleaned(raw))
        self._run(message.send_and_save if save_copy else lambda: message.send(save_copy=False))


def _body_section(summary: MessageSummary) -> str:
    """The section the body has in the summary's structure: ``1`` beside attachments, the root (``""``) alone."""
    structure = summary.structure
    if structure is None:
        return "1"
    plain, html = structure.body_parts()
    body = plain or html
    return body.section if body is not None else "1"


def _failed(key: EwsKey, outcome: Exception) -> ItemResult:
    """One item the server refused: the error a single call would have raised, named for the message."""
    detail = f"{type(outcome).__name__}: {outcome}"
    return ItemResult(key, "failed", detail, error=ProtocolError(f"message {key}: {detail}"))


def _cleaned(raw: bytes) -> bytes:
    """``raw`` with characters XML cannot carry replaced by U+FFFD in its subject and text parts."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    changed = False
    subject = message.get("Subject")
    if subject is not None and INVALID_XML_CHARS.search(str(subject)):
        message.replace_header("Subject", replace_invalid(str(subject)))
        changed = True
    for part in message.walk():
        if part.get_content_maintype() == "text" and not part.is_attachment():
            assert isinstance(part, EmailMessage)
            text = part.get_content()
            if INVALID_XML_CHARS.search(text):
                part.set_content(replace_invalid(text), subtype=part.get_content_subtype())
                changed = True
    return message.as_bytes() if changed else raw


def _restriction(filter_: MessageFilter) -> Any:
    """What EWS can narrow on the server; the loop checks every condition again on the client."""
    parts = []
    if filter_.status != "all":
        parts.append(Q(is_read=filter_.status == "read"))
    term = server_term(filter_.subject, case_sensitive=filter_.case_sensitive) if filter_.subject else None
    if term and not filter_.regex and term.isascii():
        lookup = "subject__contains" if filter_.case_sensitive else "subject__icontains"
        parts.append(Q(**{lookup: term}))
    if filter_.since_at is not None:
        parts.append(Q(datetime_received__gte=_ews_time(filter_.since_at)))
    if filter_.before_at is not None:
        parts.append(Q(datetime_received__lt=_ews_time(filter_.before_at)))
    if not parts:
        return None
    query = parts[0]
    for part in parts[1:]:
        query &= part
    return query


def _ews_time(value: dt.datetime) -> EWSDateTime:
    return EWSDateTime.from_datetime(value.astimezone(dt.UTC)).astimezone(UTC)


def _item_attachment_mime(account: Any, attachment_id: str) -> bytes:
    """An attached message (ItemAttachment) as MIME, as Exchange renders it."""
    service = GetAttachment(account=account)
    found = list(
        service.call(
            items=[AttachmentId(id=attachment_id)],
            include_mime_content=True,
            body_type=None,
            filter_html_content=None,
            additional_fields=None,
        )
    )
    attachment = found[0]
    if isinstance(attachment, Exception):
        raise attachment
    return _mime_bytes(getattr(getattr(attachment, "item", None), "mime_content", None) or b"")


def _mime_bytes(mime: bytes | str) -> bytes:
    """exchangelib's MimeContent (decoded from base64 already) as bytes."""
    return mime if isinstance(mime, bytes) else mime.encode("utf-8", "surrogateescape")
