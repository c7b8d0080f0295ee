"""Watching a folder: a one-round-trip change check (STATUS) and waiting for the server's push (IDLE).

``folder_state`` asks ``STATUS (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ])``: a watcher compares it with
the last one and lists the folder only when it changed. ``wait_for_change`` runs IDLE (RFC 2177) until the
server reports a change or the timeout passes, then ends it with DONE; a bot's trigger re-issues it well
inside the 29 minutes a server may allow, and reconciles with ``folder_state`` whatever IDLE said.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import threading
import time

from postroom.errors import ConnectionLostError, ProtocolError, UnsupportedError
from postroom.logs import get_logger
from postroom.transports.contract import STOP_CHECK_EVERY, check_flag_names
from postroom.transports.errors import mapped_errors, server_text
from postroom.transports.imap.connection import ImapConnection
from postroom.transports.imap.keys import ImapKey
from postroom.transports.imap.syntax import mailbox_arg

__all__ = ["ImapWatching"]

_log = get_logger("postroom.imap")
_CHANGE = re.compile(rb"^\* (\d+ (EXISTS|EXPUNGE|RECENT|FETCH)|VANISHED)", re.IGNORECASE)
_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)", re.IGNORECASE)
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)", re.IGNORECASE)
_STATUS_ITEM = re.compile(rb"(MESSAGES|UIDNEXT|UIDVALIDITY|HIGHESTMODSEQ) (\d+)", re.IGNORECASE)


class ImapWatching(ImapConnection):
    """STATUS-based change checks and IDLE."""

    def folder_state(self, folder: str) -> str:
        """A token that changes whenever mail arrives in, leaves or changes in ``folder`` (with CONDSTORE);
        without CONDSTORE, flag changes alone do not change it."""
        items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
        if "CONDSTORE" in self._capabilities:
            items.append("HIGHESTMODSEQ")
        lines = self._ok("STATUS", mailbox_arg(self._server_name(folder)), "(" + " ".join(items) + ")")
        found: dict[str, str] = {}
        for line in lines:
            if isinstance(line, bytes):
                for name, value in _STATUS_ITEM.findall(line):
                    found[name.decode().upper()] = value.decode()
        if "UIDVALIDITY" not in found:
            raise ProtocolError(f"STATUS of {folder!r} gave no UIDVALIDITY: {server_text(lines)}")
        return ";".join(f"{name}={found.get(name, '')}" for name in items)

    def claim_on_server(self, key: ImapKey, keyword: str, mine: str) -> bool:
        """Set ``keyword`` (and ``mine``, this deployment's own) on the message unless ``keyword`` is set
        already, as one compare-and-set on the server (CONDSTORE's ``UID STORE (UNCHANGEDSINCE modseq)``,
        RFC 7162): of two clients only one gets True. A message already carrying ``mine`` is this
        deployment's: its earlier try set both and lost the connection before the reply."""
        if "CONDSTORE" not in self._capabilities:
            raise UnsupportedError(
                "the server has no CONDSTORE, which claims on the server need", hint="leave server_claim off"
            )
        check_flag_names((keyword, mine))
        self._select(key.folder, writable=True)
        _typ, data = self._uid("FETCH", str(key.uid), "(FLAGS MODSEQ)")
        # only this message's row: the server may add unsolicited FETCHes of other messages' flag changes
        # (another deployment claiming them) to the reply, and their keyword is not this message's
        mine_row = re.compile(rb"\bUID %d\b" % key.uid)
        line = b" ".join(part for part in data if isinstance(part, bytes) and mine_row.search(part))
        if not line.strip():
            return False  # gone from the folder: someone else has taken it
        modseq = _MODSEQ.search(line)
        if modseq is None:
            raise ProtocolError(f"the server gave no MODSEQ for {key}: {server_text(line)}")
        flags = {flag.lower() for flag in _flags_of(line)}
        if mine.lower() in flags:
            return True
        if keyword.lower() in flags:
            return False
        typ, reply = self._uid(
            "STORE", str(key.uid), f"(UNCHANGEDSINCE {modseq.group(1).decode()})", f"+FLAGS.SILENT ({keyword} {mine})"
        )
        if typ != "OK":
            raise ProtocolError(f"the conditional STORE failed: {server_text(reply)}")
        return b"MODIFIED" not in b" ".join(r for r in reply if isinstance(r, bytes)).upper()

    def wait_for_change(self, folder: str, timeout: float, stop: threading.Event | None = None) -> bool:
        """IDLE on ``folder`` for at most ``timeout`` seconds, or until ``stop`` is set; True when the server
        reported a change. Without IDLE it sleeps and returns True (the caller then checks with
        :meth:`folder_state`)."""
        stop = stop or threading.Event()
        if "IDLE" not in self._capabilities:
            return not stop.wait(timeout)
        self._select(folder, writable=False)
        client = self._require()
        tag = client._new_tag()
        changed = False
        sock = client.sock
        try:
            with mapped_errors(self._where, "imap"):
                client.send(tag + b" IDLE\r\n")
                first = client.readline()
                while first.startswith(b"* "):  # a change reported before the continuation
                    changed = changed or bool(_CHANGE.match(first))
                    first = client.readline()
                if not first.startswith(b"+"):
                    raise ProtocolError(f"IDLE was refused: {server_text(first)}")
                deadline = time.monotonic() + timeout
                while not changed and not stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if not _readable(sock, min(left, STOP_CHECK_EVERY)):
                        continue  # (a socket timeout would break the buffered reader: wait with select instead)
                    line = client.readline()
                    if not line:
                        raise ConnectionLostError("the server closed the connection during IDLE")
                    changed = bool(_CHANGE.match(line))
                client.send(b"DONE\r\n")
                while True:
                    line = client.readline()
                    if not line:
                        raise ConnectionLostError("the server closed the connection when IDLE ended")
                    if line.startswith(tag):
                        break
                    changed = changed or bool(_CHANGE.match(line))
        except BaseException:
            self._drop(client)
            raise
        return changed


def _readable(sock: socket.socket, timeout: float) -> bool:
    """Whether a line can be read within ``timeout`` seconds (TLS may hold decrypted bytes already)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    ready, _, _ = select.select([sock], [], [], timeout)
    return bool(ready)


def _flags_of(line: bytes) -> list[str]:
    """The flags of a ``FETCH (FLAGS (...))`` row."""
    found = _FLAGS.search(line)
    return found.group(1).decode("ascii", "replace").split() if found else []
