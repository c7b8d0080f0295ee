"""A protocol-level stand-in for Exchange Web Services, for the tests. **Not an Exchange server.**

No Exchange server can run here, so this loopback HTTPS server speaks the part of
the EWS SOAP protocol that postroom uses, following Microsoft's published
request/response schemas (``messages.xsd``/``types.xsd``, Exchange 2013 and later):
GetFolder, FindFolder, CreateFolder, FindItem (paging, restrictions, sort order),
GetItem (field selection, ``MimeContent``, ``Body``, ``InternetMessageHeaders``,
attachment lists), GetAttachment, MoveItem, DeleteItem, UpdateItem (read status),
CreateItem (save, send, send-and-save), and pull notifications (Subscribe, GetEvents,
Unsubscribe). Every reply carries ``ServerVersionInfo``
as Exchange does, and every reply is checked by the real client (exchangelib).

It holds a small mailbox in memory and checks credentials the way Exchange's
front end does: HTTP Basic, NTLM (pyspnego's acceptor: a real NTLMv2 handshake)
and bearer tokens, which it validates against the test OAuth2 authorization server
by introspection. Text is written the way Exchange writes it: characters that XML
1.0 cannot carry (C0 controls, lone surrogates, non-characters) become numeric
character references such as ``&#x1;`` — which is what breaks strict XML clients.
"""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import logging
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from lxml import etree
from werkzeug.serving import make_server

from postroom.sandbox.certs import make_certificates
from tests.servers.delivery import parse_delivery
from tests.servers.dovecot import free_port

__all__ = ["EWS_SCOPES", "EwsAttachment", "EwsItem", "EwsServerUnderTest", "ews_server"]

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
NS = {"s": S, "m": M, "t": T}
#: Scopes an access token must carry for EWS (delegated, or app-only ``.default``).
EWS_SCOPES = frozenset({"https://outlook.office365.com/EWS.AccessAsUser.All", "https://outlook.office365.com/.default"})
_log = logging.getLogger("tests.ews")


# -- the mailbox ------------------------------------------------------------------------------


@dataclass
class EwsAttachment:
    name: str
    content_type: str
    content: bytes
    is_inline: bool = False
    content_id: str | None = None
    id: str = field(default_factory=lambda: "att-" + secrets.token_urlsafe(12))


@dataclass
class EwsItem:
    """One message. Its fields are what Exchange stores after parsing the MIME (decoded text)."""

    folder_id: str
    mime: bytes
    subject: str
    sender: tuple[str, str]
    to: list[tuple[str, str]]
    cc: list[tuple[str, str]]
    reply_to: list[tuple[str, str]]
    message_id: str
    sent: dt.datetime
    received: dt.datetime
    body: str
    body_type: str
    attachments: list[EwsAttachment]
    headers: list[tuple[str, str]]
    is_read: bool = False
    #: PidTagFlagStatus: None (not flagged), 1 (completed) or 2 (flagged for follow-up).
    flag_status: int | None = None
    #: IPM.Note for mail; IPM.Schedule.Meeting.Request, .Canceled or .Resp.Pos/Neg/Tent for meeting messages.
    item_class: str = "IPM.Note"
    categories: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: "AAMk" + secrets.token_urlsafe(30))
    changekey: str = field(default_factory=lambda: "CQAAAB" + secrets.token_urlsafe(6))

    @classmethod
    def from_mime(cls, folder_id: str, raw: bytes, *, received: dt.datetime | None = None, **fields: Any) -> EwsItem:
        """Parse ``raw`` as Exchange does on delivery; ``fields`` override what it found (for values MIME cannot hold)."""
        found = parse_delivery(raw)
        attachments = [
            EwsAttachment(
                name=f.name,
                content_type=f.content_type,
                content=f.content,
                is_inline=f.is_inline,
                content_id=f.content_id,
            )
            for f in found.attachments
        ]
        values: dict[str, Any] = {
            "folder_id": folder_id,
            "mime": raw,
            "subject": found.subject,
            "sender": found.sender,
            "to": found.to,
            "cc": found.cc,
            "reply_to": found.reply_to,
            "message_id": found.message_id,
            "sent": found.sent,
            "received": received or dt.datetime.now(dt.UTC),
            "body": found.body,
            "body_type": "HTML" if found.body_type == "html" else "Text",
            "attachments": attachments,
            "headers": found.headers,
        }
        if found.meeting is not None:  # a meeting message, as Exchange files it from its text/calendar part
            answer = {"ACCEPTED": "Pos", "DECLINED": "Neg", "TENTATIVE": "Tent"}.get(
                found.meeting.partstat or "", "Pos"
            )
            values["item_class"] = {
                "REQUEST": "IPM.Schedule.Meeting.Request",
                "CANCEL": "IPM.Schedule.Meeting.Canceled",
                "REPLY": f"IPM.Schedule.Meeting.Resp.{answer}",
            }[found.meeting.method]
        values.update(fields)
        return cls(**values)


@dataclass
class _Folder:
    id: str
    name: str
    parent_id: str | None
    distinguished: str | None = None


@dataclass
class _Subscription:
    """A pull subscription: its folders and event kinds, how long it lives unasked, when it was last asked."""

    folder_ids: frozenset[str]
    kinds: frozenset[str]
    minutes: int
    last_asked: float


@dataclass
class EwsServerUnderTest:
    """The running stand-in: its URL, CA, mailbox, and hooks for the tests."""

    url: str
    ca_file: Path
    #: primary SMTP address → password (Basic and NTLM).
    users: dict[str, str]
    #: ``DOMAIN\\user`` accepted by NTLM for each address.
    ntlm_domain: str = "CORP"
    introspect: Callable[[str], dict[str, Any]] | None = None
    folders: dict[str, _Folder] = field(default_factory=dict)
    items: dict[str, EwsItem] = field(default_factory=dict)
    #: What was sent (CreateItem SendOnly / SendAndSaveCopy, SendItem): raw MIME.
    outbox: list[bytes] = field(default_factory=list)
    #: Operations seen, in order (e.g. "GetItem"), and the auth scheme of each request.
    operations: list[str] = field(default_factory=list)
    #: The RequestServerVersion of each request.
    versions: list[str] = field(default_factory=list)
    schemes: list[str] = field(default_factory=list)
    #: Answer the next N requests with ErrorServerBusy (throttling).
    busy: int = 0
    #: Bytes of the replies sent (the bench's counter).
    bytes_out: int = 0
    #: What happened to items, in order, for pull subscriptions: (kind, item id, folder id, old item id, old folder).
    events: list[tuple[str, str, str, str | None, str | None, dt.datetime]] = field(default_factory=list)
    #: Pull subscriptions by id.
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    #: Refuse every Subscribe, as a throttling policy that allows no subscriptions does.
    refuse_subscriptions: bool = False
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _clock: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        self._add("root", None, "root")
        self._add("Top of Information Store", "root", "msgfolderroot")
        for name, key in (
            ("Inbox", "inbox"),
            ("Sent Items", "sentitems"),
            ("Deleted Items", "deleteditems"),
            ("Drafts", "drafts"),
            ("Junk Email", "junkemail"),
        ):
            self._add(name, "msgfolderroot", key)

    def _add(self, name: str, parent: str | None, distinguished: str | None = None) -> _Folder:
        folder_id = distinguished or f"folder-{next(self._ids)}-" + secrets.token_urlsafe(8)
        folder = _Folder(folder_id, name, parent, distinguished)
        self.folders[folder_id] = folder
        return folder

    def folder(self, path: str) -> str:
        """The id of folder ``path`` ("Inbox/Project1"), created when missing."""
        with self.lock:
            parent = "msgfolderroot"
            for name in path.split("/"):
                found = [f for f in self.folders.values() if f.parent_id == parent and f.name.lower() == name.lower()]
                parent = found[0].id if found else self._add(name, parent).id
            return parent

    def deliver(self, raw: bytes, path: str = "Inbox", **fields: Any) -> EwsItem:
        """Store ``raw`` in folder ``path``, received now (each delivery strictly after the last) unless given."""
        with self.lock:
            self._clock = max(dt.datetime.now(dt.UTC), self._clock + dt.timedelta(milliseconds=1))
            fields.setdefault("received", self._clock)
            item = EwsItem.from_mime(self.folder(path), raw, **fields)
            self.items[item.id] = item
            self.event("CreatedEvent", item)
            self.event("NewMailEvent", item)
            return item

    def event(self, kind: str, item: EwsItem, old: tuple[str, str] | None = None) -> None:
        """Record what happened to ``item`` (``old``: its id and folder before a move) for pull subscriptions."""
        with self.lock:
            when = dt.datetime.now(dt.UTC)
            self.events.append((kind, item.id, item.folder_id, old[0] if old else None, old[1] if old else None, when))

    def forget_subscriptions(self) -> None:
        """Lose every pull subscription, as a mailbox server does when it restarts or the mailbox moves."""
        with self.lock:
            self.subscriptions.clear()

    def in_folder(self, path: str) -> list[EwsItem]:
        with self.lock:
            folder_id = self.folder(path)
            return [i for i in self.items.values() if i.folder_id == folder_id]

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.events.clear()
            self.subscriptions.clear()
            self.refuse_subscriptions = False
            self.outbox.clear()
            self.operations.clear()
            self.versions.clear()
            self.schemes.clear()
            for key in [k for k, f in self.folders.items() if f.distinguished is None]:
                del self.folders[key]


# -- writing XML the way Exchange does ----------------------------------------------------------

_NOT_XML = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    "\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0010fffe\U0010ffff]"
)


def _x(value: object) -> str:
    """Escape text for XML; characters XML cannot carry become character references, as Exchange writes them."""
    text = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return _NOT_XML.sub(lambda m: f"&#x{ord(m.group()):X};", text)


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mailbox(name: str, address: str) -> str:
    return (
        f"<t:Mailbox><t:Name>{_x(name or address)}</t:Name><t:EmailAddress>{_x(address)}</t:EmailAddress>"
        "<t:RoutingType>SMTP</t:RoutingType><t:MailboxType>Mailbox</t:MailboxType></t:Mailbox>"
    )


def _folder_xml(state: EwsServerUnderTest, folder: _Folder) -> str:
    children = sum(1 for f in state.folders.values() if f.parent_id == folder.id)
    items = [i for i in state.items.values() if i.folder_id == folder.id]
    unread = sum(1 for i in items if not i.is_read)
    parent = f'<t:ParentFolderId Id="{_x(folder.parent_id)}" ChangeKey="AQAAAA=="/>' if folder.parent_id else ""
    return (
        f'<t:Folder><t:FolderId Id="{_x(folder.id)}" ChangeKey="AQAAAA=="/>{parent}'
        f"<t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>{_x(folder.name)}</t:DisplayName>"
        f"<t:TotalCount>{len(items)}</t:TotalCount><t:ChildFolderCount>{children}</t:ChildFolderCount>"
        f"<t:UnreadCount>{unread}</t:UnreadCount></t:Folder>"
    )


_DEFAULT_FIELDS = (
    "item:Subject",
    "message:From",
    "item:DateTimeReceived",
    "item:Size",
    "message:IsRead",
    "item:HasAttachments",
)


#: The element Exchange writes a meeting message as (types.xsd), by item class.
_MEETING_TAGS = {
    "IPM.Schedule.Meeting.Request": "MeetingRequest",
    "IPM.Schedule.Meeting.Canceled": "MeetingCancellation",
}


def _item_xml(item: EwsItem, fields: list[str], *, body_type: str = "Best") -> str:
    element = _MEETING_TAGS.get(item.item_class, "MeetingResponse" if ".Resp." in item.item_class else "Message")
    out = [f'<t:{element}><t:ItemId Id="{_x(item.id)}" ChangeKey="{_x(item.changekey)}"/>']
    for uri in fields:
        name = uri.split(":", 1)[1]
        if uri == "item:MimeContent":
            out.append(f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(item.mime).decode()}</t:MimeContent>')
        elif uri == "item:ParentFolderId":
            out.append(f'<t:ParentFolderId Id="{_x(item.folder_id)}" ChangeKey="AQAAAA=="/>')
        elif uri == "item:ItemClass":
            out.append(f"<t:ItemClass>{_x(item.item_class)}</t:ItemClass>")
        elif uri == "item:Subject":
            out.append(f"<t:Subject>{_x(item.subject)}</t:Subject>")
        elif uri == "item:Categories" and item.categories:
            out.append(
                "<t:Categories>" + "".join(f"<t:String>{_x(c)}</t:String>" for c in item.categories) + "</t:Categories>"
            )
        elif uri in ("item:Body", "item:TextBody"):
            kind = "Text" if uri == "item:TextBody" else (item.body_type if body_type == "Best" else body_type)
            text = item.body
            if kind == "Text" and item.body_type == "HTML":
                text = re.sub(r"<[^>]+>", "", item.body)
            elif kind == "HTML" and item.body_type == "Text":
                text = f"<html><body><pre>{_x(item.body)}</pre></body></html>"
            out.append(f'<t:{name} BodyType="{kind}">{_x(text)}</t:{name}>')
        elif uri == "item:Attachments":
            out.append("<t:Attachments>")
            for att in item.attachments:
                tag = "ItemAttachment" if att.content_type == "message/rfc822" else "FileAttachment"
                cid = f"<t:ContentId>{_x(att.content_id)}</t:ContentId>" if att.content_id else ""
                out.append(
                    f'<t:{tag}><t:AttachmentId Id="{_x(att.id)}"/><t:Name>{_x(att.name)}</t:Name>'
                    f"<t:ContentType>{_x(att.content_type)}</t:ContentType>{cid}"
                    f"<t:Size>{len(att.content)}</t:Size><t:IsInline>{str(att.is_inline).lower()}</t:IsInline></t:{tag}>"
                )
            out.append("</t:Attachments>")
        elif uri == "item:HasAttachments":
            has = any(not a.is_inline for a in item.attachments)
            out.append(f"<t:HasAttachments>{str(has).lower()}</t:HasAttachments>")
        elif uri == "item:Size":
            out.append(f"<t:Size>{len(item.mime)}</t:Size>")
        elif uri in ("item:DateTimeReceived", "item:DateTimeCreated"):
            out.append(f"<t:{name}>{_when(item.received)}</t:{name}>")
        elif uri == "item:DateTimeSent":
            out.append(f"<t:DateTimeSent>{_when(item.sent)}</t:DateTimeSent>")
        elif uri == "item:InternetMessageHeaders":
            headers = "".join(
                f'<t:InternetMessageHeader HeaderName="{_x(k)}">{_x(v)}</t:InternetMessageHeader>'
                for k, v in item.headers
            )
            out.append(f"<t:InternetMessageHeaders>{headers}</t:InternetMessageHeaders>")
        elif uri in ("message:From", "message:Sender"):
            out.append(f"<t:{name}>{_mailbox(*item.sender)}</t:{name}>")
        elif uri in ("message:ToRecipients", "message:CcRecipients", "message:ReplyTo"):
            people = {"ToRecipients": item.to, "CcRecipients": item.cc, "ReplyTo": item.reply_to}[name]
            if people:
                out.append(f"<t:{name}>{''.join(_mailbox(n, a) for n, a in people)}</t:{name}>")
        elif uri == "message:IsRead":
            out.append(f"<t:IsRead>{str(item.is_read).lower()}</t:IsRead>")
        elif uri == "ext:0x1090" and item.flag_status is not None:  # PidTagFlagStatus, absent when never flagged
            out.append(
                '<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x1090" PropertyType="Integer"/>'
                f"<t:Value>{item.flag_status}</t:Value></t:ExtendedProperty>"
            )
        elif uri == "message:InternetMessageId":
            out.append(f"<t:InternetMessageId>{_x(item.message_id)}</t:InternetMessageId>")
        elif uri in ("message:InReplyTo", "message:References"):
            wanted = dict((k.lower(), v) for k, v in item.headers).get(
                "in-reply-to" if name == "InReplyTo" else "references"
            )
            if wanted:
                out.append(f"<t:{name}>{_x(wanted)}</t:{name}>")
    out.append(f"</t:{element}>")
    return "".join(out)


# -- reading requests ---------------------------------------------------------------------------


class _Fault(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _folder_id(state: EwsServerUnderTest, elem: etree._Element) -> str:
    if etree.QName(elem).localname == "DistinguishedFolderId":
        return str(elem.get("Id"))
    folder_id = str(elem.get("Id"))
    if folder_id not in state.folders:
        raise _Fault("ErrorFolderNotFound", "The specified folder could not be found in the store.")
    return folder_id


def _boolean(text: str | None) -> bool:
    """xs:boolean: "true"/"1" or "false"/"0"."""
    return (text or "").strip().lower() in {"true", "1"}


def _field_value(item: EwsItem, uri: str) -> Any:
    return {
        "message:IsRead": item.is_read,
        "item:Subject": item.subject,
        "item:DateTimeReceived": item.received,
        "message:InternetMessageId": item.message_id,
        "item:HasAttachments": bool(item.attachments),
    }.get(uri)


def _constant(uri: str, text: str) -> Any:
    if uri == "message:IsRead" or uri == "item:HasAttachments":
        return _boolean(text)
    if uri == "item:DateTimeReceived":
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return text


def _matches(item: EwsItem, node: etree._Element) -> bool:
    """Evaluate a ``t:Restriction`` search expression."""
    kind = etree.QName(node).localname
    if kind == "And":
        return all(_matches(item, child) for child in node)
    if kind == "Or":
        return any(_matches(item, child) for child in node)
    if kind == "Not":
        return not _matches(item, node[0])
    uri = str(node.find("t:FieldURI", NS).get("FieldURI"))  # type: ignore[union-attr]
    value = _field_value(item, uri)
    if kind == "Exists":
        return value is not None
    if kind == "Contains":
        needle = str(node.find("t:Constant", NS).get("Value"))  # type: ignore[union-attr]
        haystack = str(value or "")
        if node.get("ContainmentComparison", "Exact").startswith("IgnoreCase"):
            needle, haystack = needle.lower(), haystack.lower()
        return needle in haystack
    constant = _constant(uri, str(node.find("t:FieldURIOrConstant/t:Constant", NS).get("Value")))  # type: ignore[union-attr]
    compare = {
        "IsEqualTo": lambda a, b: a == b,
        "IsNotEqualTo": lambda a, b: a != b,
        "IsGreaterThan": lambda a, b: a > b,
        "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
        "IsLessThan": lambda a, b: a < b,
        "IsLessThanOrEqualTo": lambda a, b: a <= b,
    }[kind]
    return bool(value is not None and compare(value, constant))


def _shape_fields(shape: etree._Element | None) -> tuple[list[str], str]:
    if shape is None:
        return list(_DEFAULT_FIELDS), "Best"
    base = shape.findtext("t:BaseShape", namespaces=NS) or "IdOnly"
    fields = [str(f.get("FieldURI")) for f in shape.findall("t:AdditionalProperties/t:FieldURI", NS)]
    fields += [
        "ext:" + str(f.get("PropertyTag")) for f in shape.findall("t:AdditionalProperties/t:ExtendedFieldURI", NS)
    ]
    if base != "IdOnly":
        fields = list(_DEFAULT_FIELDS) + fields
    return fields, shape.findtext("t:BodyType", namespaces=NS) or "Best"


def _ok(op: str, inner: str = "") -> str:
    return f'<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>{inner}</m:{op}ResponseMessage>'


def _error(op: str, code: str, text: str) -> str:
    return (
        f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{_x(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey></m:{op}ResponseMessage>"
    )


def _item_or_error(state: EwsServerUnderTest, op: str, elem: etree._Element) -> EwsItem | str:
    item = state.items.get(str(elem.get("Id")))
    if item is None:
        return _error(op, "ErrorItemNotFound", "The specified object was not found in the store.")
    return item


# -- the operations -----------------------------------------------------------------------------


def _get_folder(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    out = []
    for elem in body.find("m:FolderIds", NS):  # type: ignore[union-attr]
        folder = state.folders.get(_folder_id(state, elem))
        out.append(
            _ok("GetFolder", f"<m:Folders>{_folder_xml(state, folder)}</m:Folders>")
            if folder
            else _error("GetFolder", "ErrorFolderNotFound", "The specified folder could not be found in the store.")
        )
    return out


def _find_folder(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    deep = body.get("Traversal") == "Deep"
    out = []
    for elem in body.find("m:ParentFolderIds", NS):  # type: ignore[union-attr]
        parents = {_folder_id(state, elem)}
        found: list[_Folder] = []
        while parents:
            children = [f for f in state.folders.values() if f.parent_id in parents]
            found.extend(children)
            parents = {f.id for f in children} if deep else set()
        xml = "".join(_folder_xml(state, f) for f in found)
        out.append(
            _ok(
                "FindFolder",
                f'<m:RootFolder IndexedPagingOffset="{len(found)}" TotalItemsInView="{len(found)}" '
                f'IncludesLastItemInRange="true"><t:Folders>{xml}</t:Folders></m:RootFolder>',
            )
        )
    return out


def _create_folder(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    parent = _folder_id(state, body.find("m:ParentFolderId", NS)[0])  # type: ignore[index]
    out = []
    for elem in body.find("m:Folders", NS):  # type: ignore[union-attr]
        name = elem.findtext("t:DisplayName", namespaces=NS) or ""
        if any(f.parent_id == parent and f.name.lower() == name.lower() for f in state.folders.values()):
            out.append(_error("CreateFolder", "ErrorFolderExists", "A folder with the specified name already exists."))
            continue
        folder = state._add(name, parent)
        out.append(
            _ok(
                "CreateFolder",
                f'<m:Folders><t:Folder><t:FolderId Id="{folder.id}" ChangeKey="AQAAAA=="/></t:Folder></m:Folders>',
            )
        )
    return out


def _folder_reply(op: str, folder_id: str) -> str:
    return _ok(op, f'<m:Folders><t:Folder><t:FolderId Id="{folder_id}" ChangeKey="AQAAAA=="/></t:Folder></m:Folders>')


def _update_folder(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    out = []
    for change in body.iterfind("m:FolderChanges/t:FolderChange", NS):
        folder = state.folders[_folder_id(state, change[0])]
        name = change.findtext("t:Updates/t:SetFolderField/t:Folder/t:DisplayName", namespaces=NS)
        if name is not None:
            siblings = [f for f in state.folders.values() if f.parent_id == folder.parent_id and f is not folder]
            if any(f.name.lower() == name.lower() for f in siblings):
                out.append(
                    _error("UpdateFolder", "ErrorFolderExists", "A folder with the specified name already exists.")
                )
                continue
            folder.name = name
        out.append(_folder_reply("UpdateFolder", folder.id))
    return out


def _move_folder(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    target = _folder_id(state, body.find("m:ToFolderId", NS)[0])  # type: ignore[index]
    out = []
    for elem in body.find("m:FolderIds", NS):  # type: ignore[union-attr]
        folder = state.folders[_folder_id(state, elem)]
        folder.parent_id = target
        out.append(_folder_reply("MoveFolder", folder.id))
    return out


def _delete_folder(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    out = []
    for elem in body.find("m:FolderIds", NS):  # type: ignore[union-attr]
        folder_id = _folder_id(state, elem)
        if state.folders[folder_id].distinguished:
            out.append(
                _error("DeleteFolder", "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted.")
            )
            continue
        doomed = {folder_id}
        while more := {f.id for f in state.folders.values() if f.parent_id in doomed} - doomed:
            doomed |= more
        for gone in doomed:
            del state.folders[gone]
        for item_id in [i for i, item in state.items.items() if item.folder_id in doomed]:
            del state.items[item_id]
        out.append(_ok("DeleteFolder"))
    return out


def _find_item(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    fields, body_type = _shape_fields(body.find("m:ItemShape", NS))
    view = body.find("m:IndexedPageItemView", NS)
    offset = int(view.get("Offset", "0")) if view is not None else 0
    limit = int(view.get("MaxEntriesReturned", "1000")) if view is not None else 1000
    restriction = body.find("m:Restriction", NS)
    order = body.find("m:SortOrder/t:FieldOrder", NS)
    out = []
    for elem in body.find("m:ParentFolderIds", NS):  # type: ignore[union-attr]
        folder_id = _folder_id(state, elem)
        items = [i for i in state.items.values() if i.folder_id == folder_id]
        if restriction is not None:
            items = [i for i in items if _matches(i, restriction[0])]
        items.sort(key=lambda i: i.received, reverse=order is not None and order.get("Order") == "Descending")
        page = items[offset : offset + limit]
        xml = "".join(_item_xml(i, fields, body_type=body_type) for i in page)
        last = offset + len(page) >= len(items)
        out.append(
            _ok(
                "FindItem",
                f'<m:RootFolder IndexedPagingOffset="{offset + len(page)}" TotalItemsInView="{len(items)}" '
                f'IncludesLastItemInRange="{str(last).lower()}"><t:Items>{xml}</t:Items></m:RootFolder>',
            )
        )
    return out


def _get_item(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    fields, body_type = _shape_fields(body.find("m:ItemShape", NS))
    if _boolean(body.findtext("m:ItemShape/t:IncludeMimeContent", namespaces=NS)):
        fields.append("item:MimeContent")
    out = []
    for elem in body.find("m:ItemIds", NS):  # type: ignore[union-attr]
        found = _item_or_error(state, "GetItem", elem)
        out.append(
            found
            if isinstance(found, str)
            else _ok("GetItem", f"<m:Items>{_item_xml(found, fields, body_type=body_type)}</m:Items>")
        )
    return out


def _get_attachment(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    index = {a.id: a for i in state.items.values() for a in i.attachments}
    out = []
    for elem in body.find("m:AttachmentIds", NS):  # type: ignore[union-attr]
        att = index.get(str(elem.get("Id")))
        if att is None:
            out.append(_error("GetAttachment", "ErrorInvalidAttachmentId", "The attachment could not be found."))
            continue
        head = f'<t:AttachmentId Id="{att.id}"/><t:Name>{_x(att.name)}</t:Name><t:ContentType>{_x(att.content_type)}</t:ContentType>'
        if att.content_type == "message/rfc822":
            inner = f'<t:Message><t:MimeContent CharacterSet="UTF-8">{base64.b64encode(att.content).decode()}</t:MimeContent></t:Message>'
            xml = f"<t:ItemAttachment>{head}{inner}</t:ItemAttachment>"
        else:
            xml = f"<t:FileAttachment>{head}<t:Content>{base64.b64encode(att.content).decode()}</t:Content></t:FileAttachment>"
        out.append(_ok("GetAttachment", f"<m:Attachments>{xml}</m:Attachments>"))
    return out


def _move_item(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    target = _folder_id(state, body.find("m:ToFolderId", NS)[0])  # type: ignore[index]
    out = []
    for elem in body.find("m:ItemIds", NS):  # type: ignore[union-attr]
        found = _item_or_error(state, "MoveItem", elem)
        if isinstance(found, str):
            out.append(found)
            continue
        del state.items[found.id]
        old = (found.id, found.folder_id)
        found.folder_id = target
        found.id = "AAMk" + secrets.token_urlsafe(30)  # a moved item gets a new id, as in Exchange
        state.items[found.id] = found
        state.event("MovedEvent", found, old)
        out.append(
            _ok(
                "MoveItem",
                f"<m:Items>{_item_xml(found, [])}</m:Items>",
            )
        )
    return out


def _delete_item(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    out = []
    for elem in body.find("m:ItemIds", NS):  # type: ignore[union-attr]
        found = _item_or_error(state, "DeleteItem", elem)
        if isinstance(found, str):
            out.append(found)
            continue
        if body.get("DeleteType") == "MoveToDeletedItems":
            old = (found.id, found.folder_id)
            found.folder_id = "deleteditems"
            state.event("MovedEvent", found, old)
        else:
            del state.items[found.id]
            state.event("DeletedEvent", found)
        out.append(_ok("DeleteItem"))
    return out


def _update_item(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    out = []
    for change in body.find("m:ItemChanges", NS):  # type: ignore[union-attr]
        found = _item_or_error(state, "UpdateItem", change.find("t:ItemId", NS))  # type: ignore[arg-type]
        if isinstance(found, str):
            out.append(found)
            continue
        for setter in change.findall("t:Updates/t:SetItemField", NS):
            field_uri = setter.find("t:FieldURI", NS)
            extended = setter.find("t:ExtendedFieldURI", NS)
            if field_uri is not None and field_uri.get("FieldURI") == "message:IsRead":
                found.is_read = _boolean(setter.findtext("t:Message/t:IsRead", namespaces=NS))
            elif field_uri is not None and field_uri.get("FieldURI") == "item:Categories":
                found.categories = [c.text or "" for c in setter.iterfind("t:Message/t:Categories/t:String", NS)]
            elif extended is not None and extended.get("PropertyTag", "").lower() in ("0x1090", "4240"):
                found.flag_status = int(setter.findtext("t:Message/t:ExtendedProperty/t:Value", namespaces=NS) or 0)
            else:
                uri = (
                    field_uri.get("FieldURI")
                    if field_uri is not None
                    else extended.get("PropertyTag")
                    if extended is not None
                    else "?"
                )
                raise _Fault("ErrorInvalidPropertySet", f"the stand-in does not update {uri}")
        for remover in change.findall("t:Updates/t:DeleteItemField", NS):
            field_uri = remover.find("t:FieldURI", NS)
            extended = remover.find("t:ExtendedFieldURI", NS)
            if extended is not None and extended.get("PropertyTag", "").lower() in ("0x1090", "4240"):
                found.flag_status = None
            elif field_uri is not None and field_uri.get("FieldURI") == "item:Categories":
                found.categories = []
            else:
                raise _Fault("ErrorInvalidPropertySet", "the stand-in does not delete that field")
        found.changekey = "CQAAAB" + secrets.token_urlsafe(6)
        out.append(
            _ok(
                "UpdateItem",
                f"<m:Items>{_item_xml(found, [])}</m:Items><m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>",
            )
        )
    return out


def _create_item(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    disposition = body.get("MessageDisposition", "SaveOnly")
    saved = body.find("m:SavedItemFolderId", NS)
    out = []
    for elem in body.find("m:Items", NS):  # type: ignore[union-attr]
        mime = elem.findtext("t:MimeContent", namespaces=NS)
        if mime is None:
            raise _Fault("ErrorInvalidRequest", "the stand-in creates messages from MimeContent only")
        raw = base64.b64decode(mime)
        if disposition in ("SendOnly", "SendAndSaveCopy"):
            state.outbox.append(raw)
        if disposition == "SendOnly":
            out.append(_ok("CreateItem", "<m:Items/>"))
            continue
        folder = (
            _folder_id(state, saved[0])
            if saved is not None
            else ("sentitems" if disposition != "SaveOnly" else "drafts")
        )
        item = EwsItem.from_mime(folder, raw)
        item.is_read = _boolean(elem.findtext("t:IsRead", namespaces=NS) or "true")
        state.items[item.id] = item
        state.event("CreatedEvent", item)
        inner = "<m:Items/>" if disposition != "SaveOnly" else f"<m:Items>{_item_xml(item, [])}</m:Items>"
        out.append(_ok("CreateItem", inner))
    return out


def _convert_id(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    """Only what version detection needs: exchangelib sends a dummy id and reads ServerVersionInfo."""
    return [_error("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.") for _ in body.find("m:SourceIds", NS)]  # type: ignore[union-attr]


def _watermark(subscription_id: str, position: int) -> str:
    return base64.b64encode(f"{subscription_id}:{position}".encode()).decode()


def _subscribe(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    if state.refuse_subscriptions:
        text = "You have exceeded the available subscriptions for your account."
        return [_error("Subscribe", "ErrorExceededSubscriptionCount", text)]
    request_elem = body.find("m:PullSubscriptionRequest", NS)
    if request_elem is None:
        return [_error("Subscribe", "ErrorInvalidSubscriptionRequest", "The stand-in has pull subscriptions only.")]
    minutes = int(request_elem.findtext("t:Timeout", namespaces=NS) or "30")
    if not 1 <= minutes <= 1440:
        return [_error("Subscribe", "ErrorInvalidPullSubscriptionTimeout", "The timeout must be 1 to 1440 minutes.")]
    listed = request_elem.find("t:FolderIds", NS)
    folders = frozenset(_folder_id(state, elem) for elem in (listed if listed is not None else []))
    kinds = frozenset(e.text or "" for e in request_elem.iterfind("t:EventTypes/t:EventType", NS))
    subscription_id = "sub-" + secrets.token_urlsafe(16)
    state.subscriptions[subscription_id] = _Subscription(folders, kinds, minutes, time.monotonic())
    watermark = _watermark(subscription_id, len(state.events))
    return [
        _ok(
            "Subscribe", f"<m:SubscriptionId>{subscription_id}</m:SubscriptionId><m:Watermark>{watermark}</m:Watermark>"
        )
    ]


#: Events per GetEvents reply; MoreEvents says there are more.
EVENTS_PER_REPLY = 50


def _get_events(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    subscription_id = body.findtext("m:SubscriptionId", namespaces=NS) or ""
    subscription = state.subscriptions.get(subscription_id)
    if subscription is not None and time.monotonic() - subscription.last_asked > subscription.minutes * 60:
        del state.subscriptions[subscription_id]  # not asked within its timeout: the server has dropped it
        subscription = None
    if subscription is None:
        return [_error("GetEvents", "ErrorSubscriptionNotFound", "The specified subscription was not found.")]
    watermark = body.findtext("m:Watermark", namespaces=NS) or ""
    try:
        owner, _, position_text = base64.b64decode(watermark).decode().partition(":")
        position = int(position_text)
    except ValueError:
        owner, position = "", -1
    if owner != subscription_id or not 0 <= position <= len(state.events):
        return [_error("GetEvents", "ErrorInvalidWatermark", "The watermark used for GetEvents is invalid.")]
    subscription.last_asked = time.monotonic()
    xml, more = [], False
    for index in range(position, len(state.events)):
        kind, item_id, folder_id, old_id, old_folder, when = state.events[index]
        if kind not in subscription.kinds or not {folder_id, old_folder} & subscription.folder_ids:
            continue
        if len(xml) == EVENTS_PER_REPLY:
            more = True
            break
        old = (
            f'<t:OldItemId Id="{old_id}" ChangeKey="AQ=="/><t:OldParentFolderId Id="{old_folder}" ChangeKey="AQ=="/>'
            if old_id
            else ""
        )
        xml.append(
            f"<t:{kind}><t:Watermark>{_watermark(subscription_id, index + 1)}</t:Watermark>"
            f'<t:TimeStamp>{_when(when)}</t:TimeStamp><t:ItemId Id="{item_id}" ChangeKey="AQ=="/>'
            f'<t:ParentFolderId Id="{folder_id}" ChangeKey="AQ=="/>{old}</t:{kind}>'
        )
        position = index + 1
    if not more:
        position = len(state.events)
    if not xml:
        xml.append(f"<t:StatusEvent><t:Watermark>{_watermark(subscription_id, position)}</t:Watermark></t:StatusEvent>")
    return [
        _ok(
            "GetEvents",
            f"<m:Notification><t:SubscriptionId>{subscription_id}</t:SubscriptionId>"
            f"<t:PreviousWatermark>{watermark}</t:PreviousWatermark><t:MoreEvents>{str(more).lower()}</t:MoreEvents>"
            f"{''.join(xml)}</m:Notification>",
        )
    ]


def _unsubscribe(state: EwsServerUnderTest, body: etree._Element) -> list[str]:
    if state.subscriptions.pop(body.findtext("m:SubscriptionId", namespaces=NS) or "", None) is None:
        return [_error("Unsubscribe", "ErrorSubscriptionNotFound", "The specified subscription was not found.")]
    return [_ok("Unsubscribe")]


_OPERATIONS: dict[str, Callable[[EwsServerUnderTest, etree._Element], list[str]]] = {
    "GetFolder": _get_folder,
    "FindFolder": _find_folder,
    "CreateFolder": _create_folder,
    "UpdateFolder": _update_folder,
    "MoveFolder": _move_folder,
    "DeleteFolder": _delete_folder,
    "FindItem": _find_item,
    "GetItem": _get_item,
    "GetAttachment": _get_attachment,
    "MoveItem": _move_item,
    "DeleteItem": _delete_item,
    "UpdateItem": _update_item,
    "CreateItem": _create_item,
    "ConvertId": _convert_id,
    "Subscribe": _subscribe,
    "GetEvents": _get_events,
    "Unsubscribe": _unsubscribe,
}

_VERSION = (
    '<h:ServerVersionInfo xmlns:h="http://schemas.microsoft.com/exchange/services/2006/types" '
    'MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="39" Version="V2017_07_11"/>'
)


def _envelope(body: str) -> str:
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}"><s:Header>{_VERSION}</s:Header>'
        f'<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">{body}</s:Body></s:Envelope>'
    )


def _soap_fault(code: str, text: str, back_off_ms: int | None = None) -> str:
    detail = f'<t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value>' if back_off_ms is not None else ""
    return _envelope(
        '<s:Fault><faultcode xmlns:a="http://schemas.microsoft.com/exchange/services/2006/types">a:'
        f'{code}</faultcode><faultstring xml:lang="en-US">{_x(text)}</faultstring><detail>'
        f'<e:ResponseCode xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="http://schemas.microsoft.com/exchange/services/2006/errors">{_x(text)}</e:Message>'
        f'<t:MessageXml xmlns:t="{T}">{detail}</t:MessageXml></detail></s:Fault>'
    )


# -- authentication -------------------------------------------------------------------------------


class _Ntlm:
    """NTLM over HTTP (MS-NTHT) with pyspnego's acceptor: a real NTLMv2 challenge/response.

    IIS binds the handshake to the TCP connection; werkzeug closes every connection
    after a reply, so the stand-in binds it to the client address instead.
    """

    def __init__(self, state: EwsServerUnderTest, folder: Path) -> None:
        import os

        users = folder / "ntlm-users"
        users.write_text(
            "".join(
                f"{state.ntlm_domain}:{address.split('@')[0]}:{password}\n" for address, password in state.users.items()
            )
        )
        os.environ["NTLM_USER_FILE"] = str(users)
        self.state = state
        self.contexts: dict[str, Any] = {}

    def step(self, connection: str, token: bytes) -> tuple[bytes | None, str | None]:
        import spnego

        context = self.contexts.get(connection)
        if context is None or token[8:9] == b"\x01":  # a NEGOTIATE message starts a new handshake
            context = spnego.server(protocol="ntlm")
            self.contexts[connection] = context
        reply = context.step(token)
        if context.complete:
            del self.contexts[connection]
            user = str(context.client_principal)  # DOMAIN\user
            domain, _, name = user.partition("\\")
            matches = [a for a in self.state.users if a.split("@")[0].lower() == name.lower()]
            return reply, matches[0] if matches and domain.upper() == self.state.ntlm_domain else None
        return reply, None


def _authenticate(state: EwsServerUnderTest, ntlm: _Ntlm) -> tuple[str | None, Response | None]:
    """The mailbox owner this request may act as, or a 401 reply."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    state.schemes.append(scheme or "none")
    challenge = {"WWW-Authenticate": ['Basic realm="localhost"', "NTLM", "Bearer"]}
    connection = str(request.environ.get("REMOTE_ADDR"))
    if scheme == "Basic":
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            user, password = "", ""
        user = user.split("\\")[-1]
        for address, expected in state.users.items():
            if user.lower() in {address.lower(), address.split("@")[0].lower()} and secrets.compare_digest(
                password, expected
            ):
                return address, None
    elif scheme == "NTLM":
        try:
            reply, user = ntlm.step(connection, base64.b64decode(value))  # type: ignore[assignment]
        except Exception as exc:  # a bad handshake: 401, as IIS answers
            _log.info("NTLM refused: %s", exc)
            reply, user = None, None
        if user is not None:
            return user, None
        if reply is not None and user is None:
            return None, Response("", 401, {"WWW-Authenticate": "NTLM " + base64.b64encode(reply).decode()})
    elif scheme == "Bearer" and state.introspect is not None:
        answer = state.introspect(value)
        scopes = set(str(answer.get("scope", "")).split())
        if answer.get("active") and scopes & EWS_SCOPES:
            return str(answer.get("username", "")), None
        return None, Response("", 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    response = Response("", 401)
    for value in challenge["WWW-Authenticate"]:
        response.headers.add("WWW-Authenticate", value)
    return None, response


def _build_app(state: EwsServerUnderTest, folder: Path) -> Flask:
    app = Flask("postroom-ews-stand-in")
    ntlm = _Ntlm(state, folder)

    @app.post("/EWS/Exchange.asmx")
    def exchange() -> Response:
        user, refused = _authenticate(state, ntlm)
        if refused is not None:
            return refused
        envelope = etree.fromstring(request.get_data(), etree.XMLParser(resolve_entities=False, no_network=True))
        body = envelope.find("s:Body", NS)[0]  # type: ignore[index]
        op = etree.QName(body).localname
        requested = envelope.find("s:Header/t:RequestServerVersion", NS)
        with state.lock:
            state.operations.append(op)
            state.versions.append(requested.get("Version", "") if requested is not None else "")
            if state.busy > 0:
                state.busy -= 1
                return Response(
                    _soap_fault("ErrorServerBusy", "The server cannot service this request right now.", 50),
                    500,
                    mimetype="text/xml",
                )
        handler = _OPERATIONS.get(op)
        if handler is None:
            return Response(
                _soap_fault("ErrorInvalidRequest", f"the stand-in does not implement {op}"), 500, mimetype="text/xml"
            )
        impersonated = envelope.findtext(
            "s:Header/t:ExchangeImpersonation/t:ConnectingSID/t:PrimarySmtpAddress", namespaces=NS
        )
        if impersonated and user != impersonated and not (user or "").endswith("-app"):
            return Response(
                _soap_fault(
                    "ErrorImpersonateUserDenied",
                    "The account does not have permission to impersonate the requested user.",
                ),
                500,
                mimetype="text/xml",
            )
        try:
            with state.lock:
                messages = handler(state, body)
        except _Fault as fault:
            return Response(_soap_fault(fault.code, fault.text), 500, mimetype="text/xml")
        xml = f'<m:{op}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>{"".join(messages)}</m:ResponseMessages></m:{op}Response>'
        reply = _envelope(xml)
        with state.lock:
            state.bytes_out += len(reply.encode("utf-8", "surrogatepass"))
        return Response(reply, 200, mimetype="text/xml", content_type="text/xml; charset=utf-8")

    @app.get("/_standin/stats")
    def stats() -> Response:  # the bench's counters (a loopback test server: no auth)
        import json
        import resource

        usage = resource.getrusage(resource.RUSAGE_SELF)
        with state.lock:
            found: dict[str, float] = {"requests": len(state.operations), "bytes_out": state.bytes_out}
        found["cpu"] = usage.ru_utime + usage.ru_stime
        return Response(json.dumps(found), 200, mimetype="application/json")

    return app


@contextmanager
def ews_server(
    folder: Path, users: dict[str, str], introspect: Callable[[str], dict[str, Any]] | None = None
) -> Iterator[EwsServerUnderTest]:
    """Start the stand-in on a free loopback port with a certificate from its own CA."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    folder.mkdir(parents=True, exist_ok=True)
    certs = make_certificates(folder / "tls", ("localhost",))
    port = free_port()
    state = EwsServerUnderTest(
        f"https://localhost:{port}/EWS/Exchange.asmx", Path(certs.ca_file), users, introspect=introspect
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_file, certs.key_file)
    server = make_server("127.0.0.1", port, _build_app(state, folder), threaded=True, ssl_context=context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """``python -m tests.servers.ews``: run the stand-in with the demo's sample mailbox, to try the CLI against it."""
    import signal
    import tempfile

    from postroom.sandbox.seed import sample_mailbox

    user, password = "bot@example.test", secrets.token_urlsafe(12)
    with (
        tempfile.TemporaryDirectory(prefix="ews-standin-") as folder,
        ews_server(Path(folder), {user: password}) as state,
    ):
        for path, raw, seen in sample_mailbox(user):
            state.deliver(raw, "Processed" if path == "Processed" else "Inbox").is_read = seen
        print(f"EWS stand-in (not Exchange) at {state.url}, CA {state.ca_file}", flush=True)
        print(
            f"try: postroom --var PW={password} connect standin --protocol ews --url {state.url} "
            f"--ca-file {state.ca_file} --username {user} --password var:PW --test",
            flush=True,
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
