"""Outlook (Microsoft Graph) behind the :class:`~postroom.transports.contract.Mailbox` contract.

- Folders are named as on IMAP (``INBOX``, ``INBOX/Project1``); well-known names and IMAP
  habits (``Sent``, ``Trash``) find Graph's folders in any language (see :mod:`.folders`).
- A loop lists each folder's ids and dates (1,000 a page, ``@odata.nextLink`` followed verbatim),
  then each chunk's summaries in one query: the listing's filter narrowed to the chunk's dates, with
  the attachments' names, and the text bodies in the same pages once the loop reads them. The
  planner (:mod:`.query`) sends what Graph can filter; attachments and ``.eml`` come only when
  saved, streamed.
- Keys carry immutable ids: a moved message keeps its id. Bulk mark, flag, move and delete go
  20 per ``$batch`` with one result per message; a move whose reply was lost is checked before it is
  sent again, so a retry reports "already done" instead of acting twice.
- Sending is Graph's MIME ``sendMail``: the message postroom composed, byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import email
import email.policy
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import quote, urlencode

from postroom.auth.base import Login, TokenLogin
from postroom.config.outlook import Outlook
from postroom.errors import (
    ConfigError,
    MailServerError,
    PostroomError,
    ProtocolError,
    SessionError,
    UnsupportedError,
)
from postroom.filters import MessageFilter
from postroom.logs import get_logger
from postroom.message.keys import KeyList, KeyRun
from postroom.message.structure import MimePart
from postroom.message.summary import MessageSummary
from postroom.transports.contract import Folder, ItemResult, ServerReport
from postroom.transports.graph.client import BATCH_LIMIT, GraphClient, SubReply, SubRequest
from postroom.transports.graph.errors import GONE_CODES, SyncStateLostError, fault_of
from postroom.transports.graph.folders import SPECIAL_USE, WELL_KNOWN, FolderTree, GraphFolder
from postroom.transports.graph.governor import governor_for
from postroom.transports.graph.items import (
    EXPAND,
    LIST_FIELDS,
    MEETING_FIELDS,
    is_meeting,
    meeting_of,
    parse_time,
    summary_of,
)
from postroom.transports.graph.keys import GraphKey
from postroom.transports.graph.query import GraphQuery, graph_time, plan
from postroom.transports.outlook_flags import outlook_flags
from postroom.transports.synthesis import header_line

__all__ = ["PAGE", "GraphMailbox"]

_log = get_logger("postroom.outlook")
#: Messages per listing page (Graph's ``$top`` maximum).
PAGE = 1000
#: Messages per page when the pages carry bodies (large pages of full messages can time out, 504).
BODY_PAGE = 500
#: The largest MIME message ``sendMail`` takes (4 MB of request, base64 included).
MAX_MIME_SEND = 4 * 1024 * 1024
_FOLDER_FIELDS = "id,displayName,parentFolderId,childFolderCount,totalItemCount,unreadItemCount"


def _id(item_id: str) -> str:
    return quote(item_id, safe="=-_")


def _query(params: dict[str, str]) -> str:
    return "?" + urlencode(params, quote_via=quote, safe="$,()'=") if params else ""


class GraphMailbox:
    """One mailbox (own, shared, or any user's for an app) through Microsoft Graph."""

    def __init__(self, config: Outlook, login: Login) -> None:
        if not isinstance(login, TokenLogin):
            raise ConfigError("auth", "Microsoft Graph takes OAuth2 tokens only", hint="use OAuth2PKCE(...)")
        self.config = config
        self._login = login
        self._client: GraphClient | None = None
        self._tree: FolderTree | None = None
        #: Summaries listed by the last search, taken by :meth:`summaries` (a loop reads each once).
        self._listed: dict[GraphKey, MessageSummary] = {}
        #: The received time Graph listed for each key of the last search, and the folder and query it came
        #: from: a chunk's summaries are fetched by that query narrowed to the chunk's dates.
        self._received: dict[GraphKey, str] = {}
        self._plans: dict[str, tuple[GraphFolder, GraphQuery]] = {}
        #: Listed meeting messages whose eventMessage fields are still to be fetched.
        self._meetings: set[GraphKey] = set()
        #: Item id → target folder id of moves sent whose reply never came: checked before sending again.
        self._uncertain_moves: dict[str, str] = {}
        who = config.mailbox if config.mailbox != "me" else "me:" + (login.username.reveal() or "")
        self.governor = governor_for(config.base_url, who)
        self._path = config.mailbox_path

    # -- connection -----------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._client.broken

    def open(self) -> None:
        client = GraphClient(self.config, self._login, self.governor)
        try:
            client.json("GET", f"{self._path}/mailFolders/inbox", params={"$select": "id"}, doing="opening the inbox")
        except BaseException:
            client.close()
            raise
        self._client = client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def client(self) -> GraphClient:
        if self._client is None:
            raise SessionError("the Graph connection is closed", hint="connect first")
        return self._client

    def noop(self) -> None:
        self.client.json("GET", f"{self._path}/mailFolders/inbox", params={"$select": "id"}, doing="probing")

    def report(self) -> ServerReport:
        inbox = self.client.json(
            "GET", f"{self._path}/mailFolders/inbox", params={"$select": "id,totalItemCount"}, doing="probing"
        )
        tokens = self._login.tokens
        identity = tokens.account or self._login.username.reveal() or "an app (client credentials)"
        granted = self.client.access.granted
        return ServerReport(
            protocol="outlook",
            address=self.config.address,
            greeting=f"Microsoft Graph v1.0: mailbox {self.config.mailbox} as {identity}",
            tls_version=None,
            cipher=None,
            capabilities=(
                f"identity={identity}",
                f"mailbox={self.config.mailbox}",
                f"auth={self.config.auth.kind}",
                f"granted={' '.join(granted) or 'not said'}",
                f"cloud={self.config.azure_cloud}",
            ),
            folder_count=len(self._folders().by_path),
            message_count=int(inbox.get("totalItemCount") or 0) if isinstance(inbox, dict) else None,
            connect_steps="HTTPS, token, mailbox",
            probe="GET mailFolders/inbox",
            https=True,
        )

    # -- folders --------------------------------------------------------------------------

    def _collect(self, path: str, params: dict[str, str] | None, doing: str) -> list[dict[str, Any]]:
        """Every row of a collection, following ``@odata.nextLink`` verbatim."""
        rows: list[dict[str, Any]] = []
        for page in self._pages(path, params, doing):
            rows.extend(page)
        return rows

    def _pages(
        self, path: str, params: dict[str, str] | None, doing: str, *, headers: dict[str, str] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        link: str | None = path
        while link:
            page = self.client.json("GET", link, params=params, headers=headers, doing=doing)
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise ProtocolError(f"{doing}: Graph's reply is not a collection")
            yield [row for row in page["value"] if isinstance(row, dict)]
            link, params = page.get("@odata.nextLink"), None  # the link carries every option: verbatim

    def _folders(self) -> FolderTree:
        if self._tree is None:
            doing = "listing folders"
            rows = self._collect(f"{self._path}/mailFolders", {"$top": "250", "$select": _FOLDER_FIELDS}, doing)
            parents = [row for row in rows if int(row.get("childFolderCount") or 0) > 0]
            while parents:
                children: list[dict[str, Any]] = []
                options = _query({"$top": "250", "$select": _FOLDER_FIELDS})
                requests = [
                    SubRequest("GET", f"{self._path}/mailFolders/{_id(p['id'])}/childFolders{options}") for p in parents
                ]
                for reply in self._replies(requests, doing):
                    children.extend(row for row in reply.body.get("value", ()) if isinstance(row, dict))
                    link = reply.body.get("@odata.nextLink")
                    if link:
                        children.extend(self._collect(link, None, doing))
                rows.extend(children)
                parents = [row for row in children if int(row.get("childFolderCount") or 0) > 0]
            known = self.client.batch(
                [SubRequest("GET", f"{self._path}/mailFolders/{name}?$select=id") for name in WELL_KNOWN], doing=doing
            )
            well_known = {
                name: str(reply.body["id"])
                for name, reply in zip(WELL_KNOWN, known, strict=True)
                if reply.ok and isinstance(reply.body, dict) and reply.body.get("id")
            }
            self._tree = FolderTree(rows, well_known)
        return self._tree

    def _replies(self, requests: list[SubRequest], doing: str) -> list[SubReply]:
        """The batch's replies, each a success (JSON object) or the error it is."""
        replies = self.client.batch(requests, doing=doing)
        for reply in replies:
            if not reply.ok or not isinstance(reply.body, dict):
                raise self.client.fault(reply, doing)
        return replies

    def _folder(self, path: str) -> GraphFolder:
        for attempt in range(2):
            found = self._folders().find(path)
            if found is not None:
                return found
            if attempt == 0:
                self._tree = None  # created since the listing? list once more
        shown = ", ".join(sorted(self._folders().by_path)[:30])
        raise ConfigError("folder", f"no folder {path!r} in this mailbox", hint=f"folders: {shown}")

    def folders(self, pattern: str = "*") -> list[Folder]:
        """Folders matching ``pattern`` (``*`` any depth, ``%`` one level), case-insensitive."""
        return [
            Folder(
                name=f.path, delimiter="/", flags=(SPECIAL_USE[f.well_known],) if f.well_known in SPECIAL_USE else ()
            )
            for f in self._folders().matching(pattern)
        ]

    def create_folder(self, name: str) -> Folder:
        """Each missing level of ``name`` as a child of the one above (``INBOX/x`` under the inbox)."""
        levels = [level for level in name.strip().split("/") if level]
        if not levels:
            raise ConfigError("folder", "is empty", hint="give a folder name such as 'Processed'")
        parent: GraphFolder | None = None
        for depth in range(1, len(levels) + 1):
            path = "/".join(levels[:depth])
            found = self._folders().find(path)
            if found is None:
                where = f"/mailFolders/{_id(parent.id)}/childFolders" if parent else "/mailFolders"
                doing = f"creating folder {path!r}"
                try:
                    self.client.json("POST", self._path + where, body={"displayName": levels[depth - 1]}, doing=doing)
                except PostroomError:
                    self._tree = None
                    if self._folders().find(path) is None:  # not made meanwhile by another bot: a real failure
                        raise
                self._tree = None
                found = self._folder(path)
            parent = found
        assert parent is not None
        return Folder(name=parent.path, delimiter="/")

    def rename_folder(self, name: str, new_name: str) -> Folder:
        """PATCH its display name; ``move`` it first when the levels above change (the parent must exist)."""
        folder = self._folder(name)
        levels = [level for level in new_name.strip().split("/") if level]
        parent_path = "/".join(levels[:-1])
        old_parent = folder.path.rpartition("/")[0]
        if parent_path.casefold() != old_parent.casefold():
            target = self._folder(parent_path).id if parent_path else "msgfolderroot"
            self.client.json(
                "POST",
                f"{self._path}/mailFolders/{_id(folder.id)}/move",
                body={"destinationId": target},
                doing=f"moving folder {folder.path!r}",
            )
        if levels[-1] != folder.path.rpartition("/")[2]:
            self.client.json(
                "PATCH",
                f"{self._path}/mailFolders/{_id(folder.id)}",
                body={"displayName": levels[-1]},
                doing=f"renaming folder {folder.path!r}",
            )
        self._tree = None
        return Folder(name=self._folder(new_name).path, delimiter="/")

    def delete_folder(self, name: str) -> None:
        """For good (``permanentDelete``), with the messages in it."""
        folder = self._folder(name)
        self.client.json(
            "POST",
            f"{self._path}/mailFolders/{_id(folder.id)}/permanentDelete",
            doing=f"deleting folder {folder.path!r}",
        )
        self._tree = None

    def _folders_for(self, filter_: MessageFilter) -> list[GraphFolder]:
        tree = self._folders()
        if any(ch in filter_.folder for ch in "*%"):
            found = tree.matching(filter_.folder.replace("*", "%"))
            if not found:
                raise ConfigError("folder", f"no folder matches {filter_.folder!r}", hint="postroom folders lists them")
        else:
            found = [self._folder(filter_.folder)]
        if filter_.include_subfolders:
            for base in list(found):
                found += self._folders().below(base.path)
        return list({f.id: f for f in found}.values())

    # -- search and fetch -----------------------------------------------------------------

    def search(self, filter_: MessageFilter) -> list[KeyRun]:
        """The keys, from a listing of ids and dates only (about 100 bytes a message, 1,000 a page); the
        summaries then come a chunk at a time (:meth:`summaries`), with the bodies when the loop reads them."""
        query = plan(filter_)
        folders = self._folders_for(filter_)
        stop = filter_.limit if query.complete and filter_.limit is not None and len(folders) == 1 else None
        self._listed.clear()
        self._meetings.clear()
        self._received.clear()
        runs: list[KeyRun] = []
        for folder in folders:
            params = {"$select": "id,receivedDateTime", "$top": str(min(PAGE, stop or PAGE)), **query.params()}
            rows: list[tuple[str, str]] = []
            path = f"{self._path}/mailFolders/{_id(folder.id)}/messages"
            for page in self._pages(path, params, f"listing {folder.path}"):
                rows.extend((str(r["id"]), str(r.get("receivedDateTime") or "")) for r in page if r.get("id"))
                if stop is not None and len(rows) >= stop:
                    break
            if query.orderby is None:  # Graph was not asked to sort (contains() refuses it): sort here
                rows.sort(key=lambda row: row[1], reverse=filter_.order == "newest")
            keys = []
            for item_id, received in rows:
                key = GraphKey(folder.path, item_id)
                self._received[key] = received
                keys.append(key)
            self._plans[folder.path] = (folder, query)
            runs.append(KeyList(folder.path, keys))
        return runs

    def changes(self, filter_: MessageFilter, position: dict[str, Any] | None) -> tuple[KeyRun, dict[str, Any]]:
        """What arrived in the folder since ``position``, through Graph delta (one round, every page).

        The position keeps the round's delta link and the ids already handed out; a message that
        left the folder (``@removed``) leaves that set, so it counts as new if it comes back. When
        Graph has forgotten the link (``410``), a fresh round lists the folder and only ids not in
        the set come out.
        """
        if self.config.azure_cloud == "china":
            raise UnsupportedError(
                "an incremental loop (since_last) needs Graph's message delta, which the China (21Vianet) cloud "
                "does not offer",
                hint="loop without since_last and move or mark what was handled; nothing was sent to the server",
            )
        folder = self._folder(filter_.folder)
        known = position if position is not None and position.get("folder_id") == folder.id else None
        seen = set(known.get("seen", ())) if known else set()
        link = known.get("delta") if known else None
        try:
            rows, removed, delta = self._delta(folder, link)
        except SyncStateLostError:
            _log.info("Graph forgot the delta link of %s; listing it again", folder.path)
            rows, removed, delta = self._delta(folder, None)
        listed: list[tuple[float, int, MessageSummary]] = []
        for index, row in enumerate(rows):
            if row["id"] in seen:
                continue  # changed (read, flagged), not new
            summary = summary_of(row, folder.path)
            if is_meeting(row):
                self._meetings.add(cast(GraphKey, summary.key))
            listed.append((summary.received.timestamp() if summary.received else 0.0, index, summary))
        # by date, and in change order within a second (Graph's dates have no finer grain)
        listed.sort(key=lambda entry: entry[:2], reverse=filter_.order == "newest")
        keys = []
        for _, _, summary in listed:
            self._listed[cast(GraphKey, summary.key)] = summary
            keys.append(cast(GraphKey, summary.key))
        seen = (seen | {row["id"] for row in rows}) - removed
        after = {"folder_id": folder.id, "delta": delta, "seen": sorted(seen)}
        return KeyList(folder.path, keys), after

    def _delta(self, folder: GraphFolder, link: str | None) -> tuple[list[dict[str, Any]], set[str], str]:
        """Every row of one delta round (from ``link``, or a new round), the ids removed, and the next delta link."""
        path = link or f"{self._path}/mailFolders/{_id(folder.id)}/messages/delta"
        params = None if link else {"$select": LIST_FIELDS, "$expand": EXPAND}
        headers = {"Prefer": f'IdType="ImmutableId", odata.maxpagesize={PAGE}'}
        rows: dict[str, dict[str, Any]] = {}  # in change order; a later change of one id replaces its earlier one
        removed: set[str] = set()
        doing = f"reading the changes of {folder.path}"
        while True:
            page = self.client.json("GET", path, params=params, headers=headers, doing=doing)
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise ProtocolError(f"{doing}: Graph's reply is not a collection")
            for row in page["value"]:
                if not isinstance(row, dict) or not row.get("id"):
                    continue
                item_id = str(row["id"])
                if "@removed" in row:
                    removed.add(item_id)
                    rows.pop(item_id, None)
                else:
                    removed.discard(item_id)
                    rows[item_id] = row
            if page.get("@odata.nextLink"):
                path, params = page["@odata.nextLink"], None
                continue
            delta = page.get("@odata.deltaLink")
            if not delta:
                raise ProtocolError(f"{doing}: Graph's last delta page has no deltaLink")
            return list(rows.values()), removed, str(delta)

    def summaries(self, keys: list[GraphKey], *, bodies: bool = False) -> list[MessageSummary]:
        found: dict[GraphKey, MessageSummary] = {}
        for key in keys:
            summary = self._listed.pop(key, None)
            if summary is not None:
                found[key] = summary
        ranged = [k for k in keys if k not in found and k in self._received and k.folder in self._plans]
        if ranged:
            found.update(self._range(ranged, bodies))
        missing = [k for k in keys if k not in found]
        if missing:
            options = _query({"$select": LIST_FIELDS, "$expand": EXPAND})
            requests = [SubRequest("GET", f"{self._path}/messages/{_id(k.item_id)}{options}") for k in missing]
            for key, reply in zip(missing, self.client.batch(requests, doing="reading messages"), strict=True):
                if reply.ok and isinstance(reply.body, dict):
                    found[key] = summary_of(reply.body, key.folder)
                    if is_meeting(reply.body):
                        self._meetings.add(key)
                elif not self._gone(reply):
                    raise self.client.fault(reply, f"reading {key}")
        meetings = [key for key in found if key in self._meetings]
        if meetings:
            self._add_meetings(found, meetings)
        return [found[key] for key in keys if key in found]

    def _range(self, keys: list[GraphKey], bodies: bool) -> dict[GraphKey, MessageSummary]:
        """The summaries of a chunk of listed keys in one query (see :meth:`_span_rows`), with the text
        bodies in the same pages when the loop reads them."""
        times = [self._received[k] for k in keys]
        select = LIST_FIELDS + (",body" if bodies else "")
        found: dict[GraphKey, MessageSummary] = {}
        for key, row in self._span_rows(keys, times, select, expand=True, bodies=bodies):
            summary = summary_of(row, key.folder)
            if bodies:
                summary = dataclasses.replace(summary, body_start=_body_bytes(row))
            if is_meeting(row):
                self._meetings.add(key)
            found[key] = summary
        for key in keys:  # only now: a query cut by a dropped connection is asked again the same way
            self._received.pop(key, None)
        return found

    def _span_rows(
        self, keys: list[GraphKey], times: list[str], select: str, *, expand: bool, bodies: bool
    ) -> Iterator[tuple[GraphKey, dict[str, Any]]]:
        """The rows of ``keys`` (one folder, consecutive in the last listing) from one query: the listing's
        filter narrowed to their received dates. A chunk is consecutive in date order, so that is the
        chunk, give or take a message that arrived since (left out by id)."""
        folder, query = self._plans[keys[0].folder]
        ordered = sorted(times)
        # Graph shows whole seconds but keeps finer times: the chunk's last second is taken whole
        last = parse_time(ordered[-1])
        until = graph_time(last + dt.timedelta(seconds=1)) if last else ordered[-1]
        span = f"receivedDateTime ge {ordered[0]} and receivedDateTime lt {until}"
        params = {
            "$select": select,
            "$top": str(BODY_PAGE if bodies else PAGE),
            "$filter": f"{span} and {query.filter}" if query.filter else span,
        }
        if expand:
            params["$expand"] = EXPAND
        wanted = set(keys)
        seen = 0
        path = f"{self._path}/mailFolders/{_id(folder.id)}/messages"
        headers = _body_prefer("text") if bodies else None
        for page in self._pages(path, params, f"reading {folder.path}", headers=headers):
            for row in page:
                key = GraphKey(folder.path, str(row.get("id") or ""))
                if key in wanted:
                    seen += 1
                    yield key, row
            if seen == len(wanted):
                return

    def _add_meetings(self, found: dict[GraphKey, MessageSummary], keys: list[GraphKey]) -> None:
        requests = [SubRequest("GET", f"{self._path}/messages/{_id(k.item_id)}?$select={MEETING_FIELDS}") for k in keys]
        for key, reply in zip(keys, self.client.batch(requests, doing="reading meeting messages"), strict=True):
            self._meetings.discard(key)
            if reply.ok and isinstance(reply.body, dict):
                meeting = meeting_of({"@odata.type": "#microsoft.graph.eventMessage", **reply.body})
                found[key] = dataclasses.replace(found[key], meeting=meeting)

    @staticmethod
    def _gone(reply: SubReply) -> bool:
        return reply.status == 404 or fault_of(reply.status, reply.body).code in GONE_CODES

    def bodies(self, summaries: list[MessageSummary]) -> dict[tuple[GraphKey, str], bytes]:
        """The text bodies of ``summaries``, 20 per ``$batch``, as Exchange renders them in text."""
        wanted = []
        found: dict[tuple[GraphKey, str], bytes] = {}
        for summary in summaries:
            plain = summary.structure.body_parts()[0] if summary.structure is not None else None
            if plain is None:
                continue
            if summary.body_start is not None:  # came with the summary
                found[(cast(GraphKey, summary.key), plain.section)] = summary.body_start
            else:
                wanted.append((cast(GraphKey, summary.key), plain.section))
        listed = {k: s for k, s in ((cast(GraphKey, x.key), x) for x in summaries)}
        spannable = [(k, sec) for k, sec in wanted if k.folder in self._plans and listed[k].received is not None]
        if len(spannable) >= BATCH_LIMIT and len({k.folder for k, _ in spannable}) == 1:  # one query, not batches
            sections = dict(spannable)
            keys = [k for k, _ in spannable]
            times = [graph_time(cast(dt.datetime, listed[k].received)) for k in keys]
            for key, row in self._span_rows(keys, times, "id,body", expand=False, bodies=True):
                found[(key, sections[key])] = _body_bytes(row)
            wanted = [(k, sec) for k, sec in wanted if (k, sec) not in found]
        requests = [
            SubRequest("GET", f"{self._path}/messages/{_id(k.item_id)}?$select=body", headers=_body_prefer("text"))
            for k, _ in wanted
        ]
        for (key, section), reply in zip(wanted, self.client.batch(requests, doing="reading bodies"), strict=True):
            if reply.ok and isinstance(reply.body, dict):
                found[(key, section)] = _body_bytes(reply.body)
        return found

    def _body(self, key: GraphKey, kind: str) -> bytes:
        item = self.client.json(
            "GET",
            f"{self._path}/messages/{_id(key.item_id)}",
            params={"$select": "body"},
            headers=_body_prefer(kind),
            doing=f"reading the body of {key}",
        )
        return _body_bytes(item if isinstance(item, dict) else {})

    def part_content(self, key: GraphKey, part: MimePart) -> bytes:
        chunks: list[bytes] = []
        self.stream_part(key, part, chunks.append)
        return b"".join(chunks)

    def stream_part(self, key: GraphKey, part: MimePart, write: Callable[[bytes], object]) -> int:
        kind, _, attachment_id = (part.handle or "").partition(":")
        if kind == "body":
            data = self._body(key, attachment_id)
            write(data)
            return len(data)
        if kind == "ref":
            raise UnsupportedError(
                f"{part.filename or 'the attachment'} of {key} is a reference attachment: a link to a file in "
                "OneDrive or SharePoint, not a file in the message",
                hint="open the link in Outlook; postroom lists it but cannot download it",
            )
        if kind not in ("file", "item") or not attachment_id:
            raise ProtocolError(f"part {part.section} of {key} is not an attachment Graph has")
        path = f"{self._path}/messages/{_id(key.item_id)}/attachments/{_id(attachment_id)}/$value"
        return self.client.stream(path, write, doing=f"saving {part.filename or 'an attachment'} of {key}")

    def header_block(self, key: GraphKey) -> bytes:
        item = self.client.json(
            "GET",
            f"{self._path}/messages/{_id(key.item_id)}",
            params={"$select": f"internetMessageHeaders,{LIST_FIELDS}"},
            doing=f"reading the headers of {key}",
        )
        headers = item.get("internetMessageHeaders") if isinstance(item, dict) else None
        if not headers:  # sent and draft items have none: the typed fields then
            return summary_of(item, key.folder).header
        return b"".join(
            header_line(str(h.get("name") or "X-Unnamed"), str(h.get("value") or ""))
            for h in headers
            if isinstance(h, dict)
        )

    def raw(self, key: GraphKey) -> bytes:
        chunks: list[bytes] = []
        self.client.stream(f"{self._path}/messages/{_id(key.item_id)}/$value", chunks.append, doing=f"reading {key}")
        return b"".join(chunks)

    # -- changes ----------------------------------------------------------------------------

    def _bulk(
        self, keys: list[GraphKey], request: Callable[[GraphKey], SubRequest], doing: str
    ) -> list[tuple[GraphKey, SubReply]]:
        return list(zip(keys, self.client.batch([request(k) for k in keys], doing=doing), strict=True))

    def _result(self, key: GraphKey, reply: SubReply, doing: str, *, gone_is_done: bool = False) -> ItemResult:
        if reply.ok:
            return ItemResult(key, "done")
        if gone_is_done and self._gone(reply):
            return ItemResult(key, "already_done", "not in the mailbox any more")
        error = self.client.fault(reply, f"{doing} {key}")
        return ItemResult(key, "failed", error.problem, error=error)

    def set_seen(self, keys: list[GraphKey], seen: bool) -> list[ItemResult]:
        doing = "marking read" if seen else "marking unread"
        replies = self._bulk(
            keys, lambda k: SubRequest("PATCH", f"{self._path}/messages/{_id(k.item_id)}", {"isRead": seen}), doing
        )
        return [self._result(key, reply, doing) for key, reply in replies]

    def set_flags(self, keys: list[GraphKey], flags: tuple[str, ...], on: bool) -> list[ItemResult]:
        """``\\Flagged`` is Outlook's follow-up flag; other keywords are Outlook categories."""
        change = outlook_flags(flags, "Outlook")
        current: dict[GraphKey, list[str]] = {}
        if change.categories:
            for key, reply in self._bulk(
                keys,
                lambda k: SubRequest("GET", f"{self._path}/messages/{_id(k.item_id)}?$select=categories"),
                "reading categories",
            ):
                if reply.ok and isinstance(reply.body, dict):
                    current[key] = [str(c) for c in reply.body.get("categories") or ()]

        def patch(key: GraphKey) -> SubRequest:
            body: dict[str, Any] = {}
            if change.follow_up:
                body["flag"] = {"flagStatus": "flagged" if on else "notFlagged"}
            if change.categories:
                body["categories"] = change.merged(current.get(key, []), on)
            return SubRequest("PATCH", f"{self._path}/messages/{_id(key.item_id)}", body)

        doing = "flagging" if on else "unflagging"
        results = []
        for key, reply in self._bulk(keys, patch, doing):
            if change.categories and key not in current:
                results.append(ItemResult(key, "failed", "the message is gone", error=ProtocolError(f"{key} is gone")))
            else:
                results.append(self._result(key, reply, doing))
        return results

    def move(self, keys: list[GraphKey], folder: str) -> list[ItemResult]:
        target = self._folder(folder)
        results: dict[GraphKey, ItemResult] = {}
        uncertain = [k for k in keys if self._uncertain_moves.get(k.item_id) == target.id]
        if uncertain:  # sent before, reply lost: already in the target?
            options = "?$select=id,parentFolderId"
            for key, reply in self._bulk(
                uncertain,
                lambda k: SubRequest("GET", f"{self._path}/messages/{_id(k.item_id)}{options}"),
                "checking moves",
            ):
                if reply.ok and isinstance(reply.body, dict) and reply.body.get("parentFolderId") == target.id:
                    self._uncertain_moves.pop(key.item_id, None)
                    new_key = GraphKey(target.path, str(reply.body.get("id") or key.item_id))
                    results[key] = ItemResult(key, "already_done", f"already in {target.path}", new_key=new_key)
        pending = [k for k in keys if k not in results]
        for key in pending:
            self._uncertain_moves[key.item_id] = target.id
        body = {"destinationId": target.id}
        replies = self._bulk(
            pending,
            lambda k: SubRequest("POST", f"{self._path}/messages/{_id(k.item_id)}/move", body),
            f"moving to {target.path}",
        )
        for key, reply in replies:
            self._uncertain_moves.pop(key.item_id, None)
            if reply.ok and isinstance(reply.body, dict):
                new_key = GraphKey(target.path, str(reply.body.get("id") or key.item_id))
                results[key] = ItemResult(key, "done", new_key=new_key)
            else:
                results[key] = self._result(key, reply, f"moving to {target.path}")
        return [results[key] for key in keys]

    def delete(self, keys: list[GraphKey]) -> list[ItemResult]:
        """For good (``permanentDelete``: to Recoverable Items › Purges); one gone already is already done."""
        doing = "deleting"
        replies = self._bulk(
            keys, lambda k: SubRequest("POST", f"{self._path}/messages/{_id(k.item_id)}/permanentDelete"), doing
        )
        return [self._result(key, reply, doing, gone_is_done=True) for key, reply in replies]

    def _post_mime(self, path: str, encoded: bytes, doing: str) -> Any:
        """POST a MIME message as Graph takes one: its base64 as a ``text/plain`` body."""
        return self.client.json(
            "POST", self._path + path, content=encoded, headers={"Content-Type": "text/plain"}, doing=doing
        )

    def save_draft(self, raw: bytes) -> str:
        """Graph makes a draft of a MIME message (``POST /messages``) in Drafts; over 4 MB, the large
        attachments go through upload sessions as when sending."""
        encoded = base64.b64encode(raw)
        if len(encoded) <= MAX_MIME_SEND:
            self._post_mime("/messages", encoded, "saving a draft")
        else:
            self._large_draft(raw)
        return self._folder("drafts").path

    def submit(self, raw: bytes, *, save_copy: bool) -> None:
        """Graph's MIME ``sendMail`` (which keeps a copy in Sent Items: MIME sends have no switch for it).

        A message over 4 MB (base64 included) goes as a draft: the MIME without its largest
        attachments, each of those through an upload session (up to 150 MB), then ``send``.
        """
        encoded = base64.b64encode(raw)
        if len(encoded) <= MAX_MIME_SEND:
            self._post_mime("/sendMail", encoded, "sending")
            return
        draft_id = self._large_draft(raw)
        self.client.json("POST", f"{self._path}/messages/{_id(draft_id)}/send", doing="sending the draft")

    def _large_draft(self, raw: bytes) -> str:
        """The draft of a large message, its big attachments uploaded; nothing is sent yet (so nothing is
        sent when this fails, and the draft is deleted)."""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        uploads = _split_large(message)
        rest = base64.b64encode(message.as_bytes())
        if len(rest) > MAX_MIME_SEND:
            raise UnsupportedError(
                "the message is over 4 MB without its attachments", hint="nothing was sent: shorten the body"
            )
        draft = self._post_mime("/messages", rest, "saving a draft")
        if not isinstance(draft, dict) or not draft.get("id"):
            raise ProtocolError("saving a draft: Graph's reply has no message id; nothing was sent")
        draft_id = str(draft["id"])
        try:
            for name, content_type, data in uploads:
                doing = f"uploading {name} ({len(data) / 1e6:.1f} MB)"
                item = {"attachmentType": "file", "name": name, "size": len(data), "contentType": content_type}
                session = self.client.json(
                    "POST",
                    f"{self._path}/messages/{_id(draft_id)}/attachments/createUploadSession",
                    body={"AttachmentItem": item},
                    doing=doing,
                )
                url = session.get("uploadUrl") if isinstance(session, dict) else None
                if not url:
                    raise ProtocolError(f"{doing}: Graph's reply has no uploadUrl")
                self.client.upload(str(url), data, doing=doing)
        except PostroomError as failed:
            with contextlib.suppress(PostroomError):
                self.client.json("DELETE", f"{self._path}/messages/{_id(draft_id)}", doing="deleting the draft")
            raise MailServerError(
                f"{failed.problem}; nothing was sent (the draft was deleted)", hint=failed.hint or "send it again"
            ) from failed
        return draft_id


#: Largest attachment an upload session takes (Graph: 150 MB).
MAX_UPLOAD = 150 * 1024 * 1024


def _split_large(message: EmailMessage) -> list[tuple[str, str, bytes]]:
    """Take attachments out of ``message``, largest first, until the rest fits ``sendMail``; each as
    (name, type, bytes) for an upload session."""
    attachments = sorted(message.iter_attachments(), key=lambda part: len(part.as_bytes()), reverse=True)
    taken: list[tuple[str, str, bytes]] = []
    for part in attachments:
        if len(base64.b64encode(message.as_bytes())) <= MAX_MIME_SEND:
            break
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes) or part.get_content_type() == "message/rfc822":
            continue  # an attached message stays in the MIME
        name = part.get_filename() or "attachment.bin"
        if len(data) > MAX_UPLOAD:
            raise UnsupportedError(
                f"{name} is {len(data) / 1e6:.0f} MB; Graph takes attachments up to 150 MB",
                hint="nothing was sent: send it as a link",
            )
        taken.append((name, part.get_content_type(), data))
        payload = message.get_payload()
        assert isinstance(payload, list)
        message.set_payload([p for p in payload if p is not part])
    return taken


def _body_prefer(kind: str) -> dict[str, str]:
    return {"Prefer": f'IdType="ImmutableId", outlook.body-content-type="{kind}"'}


def _body_bytes(item: dict[str, Any]) -> bytes:
    body = item.get("body")
    content = body.get("content") if isinstance(body, dict) else None
    return str(content or "").encode("utf-8", "surrogatepass")
