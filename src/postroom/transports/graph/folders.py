"""Graph's mail folders, named as on IMAP: ``INBOX``, ``INBOX/Project1``, ``Archive``.

The inbox is found by its well-known name, not its display name (which is in the mailbox's
language: "Posteingang"), and is ``INBOX`` with ``/`` between levels below it. A name that
is no folder's path may be an IMAP habit or one of Graph's well-known names: ``Sent`` and
``sentitems`` find *Sent Items*, ``Trash`` finds *Deleted Items*, ``Junk`` and ``Spam`` find
*Junk Email*, in whatever language the mailbox shows them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from postroom.transports.imap.folders import folder_pattern, user_path

__all__ = ["SPECIAL_USE", "WELL_KNOWN", "FolderTree", "GraphFolder"]

#: Graph's well-known folder names that a loop or a move commonly means.
WELL_KNOWN = ("inbox", "sentitems", "deleteditems", "drafts", "junkemail", "archive", "outbox")
#: Names users bring from IMAP (and Graph's own) → the well-known folder they mean.
_ALIASES: dict[str, str] = {
    **{name: name for name in WELL_KNOWN},
    "sent": "sentitems",
    "sent items": "sentitems",
    "sent messages": "sentitems",
    "trash": "deleteditems",
    "deleted": "deleteditems",
    "deleted items": "deleteditems",
    "junk": "junkemail",
    "junk email": "junkemail",
    "spam": "junkemail",
}
#: Special-use flags (RFC 6154) of the well-known folders, for ``folders --json``.
SPECIAL_USE = {
    "sentitems": "\\Sent",
    "deleteditems": "\\Trash",
    "drafts": "\\Drafts",
    "junkemail": "\\Junk",
    "archive": "\\Archive",
}


@dataclass(frozen=True)
class GraphFolder:
    """One folder: its path as postroom names it, Graph's id, and its counts."""

    path: str
    id: str
    total: int = 0
    unread: int = 0
    well_known: str | None = None


class FolderTree:
    """Every mail folder of a mailbox by path, from Graph's listing."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], well_known: Mapping[str, str]) -> None:
        by_id = {str(row["id"]): row for row in rows if row.get("id")}
        names_by_id = {folder_id: name for name, folder_id in well_known.items()}
        inbox = well_known.get("inbox")
        paths: dict[str, str] = {}

        def path_of(folder_id: str, depth: int = 0) -> str:
            if folder_id in paths:
                return paths[folder_id]
            row = by_id[folder_id]
            name = "INBOX" if folder_id == inbox else str(row.get("displayName") or folder_id).strip()
            parent = str(row.get("parentFolderId") or "")
            if parent in by_id and depth < 64:  # top-level folders' parent is the root, not listed
                name = f"{path_of(parent, depth + 1)}/{name}"
            paths[folder_id] = name
            return name

        self.by_path: dict[str, GraphFolder] = {}
        for folder_id, row in by_id.items():
            folder = GraphFolder(
                path_of(folder_id),
                folder_id,
                int(row.get("totalItemCount") or 0),
                int(row.get("unreadItemCount") or 0),
                names_by_id.get(folder_id),
            )
            self.by_path.setdefault(folder.path, folder)
        self._by_folded = {path.casefold(): folder for path, folder in self.by_path.items()}
        self._well_known = {name: folder_id for name, folder_id in well_known.items() if folder_id in by_id}
        self.by_id = {folder.id: folder for folder in self.by_path.values()}

    def find(self, path: str) -> GraphFolder | None:
        """The folder ``path`` names: its path (case-insensitive), else a well-known folder it means."""
        wanted = user_path(path)
        found = self._by_folded.get(wanted.casefold())
        if found is not None:
            return found
        alias = _ALIASES.get(wanted.casefold())
        folder_id = self._well_known.get(alias) if alias else None
        return self.by_id.get(folder_id) if folder_id else None

    def matching(self, pattern: str) -> list[GraphFolder]:
        """Folders matching ``pattern`` (``*`` any depth, ``%`` one level), case-insensitive, by path."""
        regex = folder_pattern(pattern or "*")
        return [self.by_path[path] for path in sorted(self.by_path) if regex.match(path)]

    def below(self, path: str) -> list[GraphFolder]:
        """Every folder under ``path``, at any depth."""
        prefix = path.casefold() + "/"
        return [self.by_path[p] for p in sorted(self.by_path) if p.casefold().startswith(prefix)]
