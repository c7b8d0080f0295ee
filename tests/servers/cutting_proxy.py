"""A TLS proxy that cuts connections: the hostile network, on loopback.

It terminates the client's TLS with the test CA's certificate (so it sees the
protocol in plain text), opens its own TLS connection to the real server, and
relays both ways until a rule cuts the connection:

- every ``N`` bytes from the server (``N`` drawn per connection from a range):
  a network that drops every few hundred KB;
- when the client sends a line that matches a pattern: ``before`` the server
  sees it (the command never ran), or ``after`` (the server ran it, and its reply
  never reaches the client).

A cut closes both sides at once, as a reset router does. Counts of what was cut
are kept so a test can check how often it happened.

With ``reorder`` it plays a server that runs pipelined commands at once (RFC 3501 §5.5
allows it; Dovecot does it, but only now and then): each FETCH completion is held back
until the server's next data, so the next command's responses arrive before it, and
that command's own completion sometimes does too.
"""

from __future__ import annotations

import random
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tests.servers.listening import listening

__all__ = ["CutRule", "CuttingProxy", "cutting_proxy"]

_FETCH_COMPLETION = re.compile(rb"(?m)^[A-Za-z0-9]+ OK Fetch completed[^\r\n]*\r\n")
_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n\Z")
#: How long a held completion waits for more of the server's data before it goes anyway.
_HOLD_SECONDS = 0.02


@dataclass
class CutRule:
    """Cut when the client sends a line matching ``pattern``, ``before`` or ``after`` the server gets it:
    at the first match, then at every ``spacing``-th one (2: every other, so a repeat gets through),
    ``times`` cuts at most."""

    pattern: bytes
    when: Literal["before", "after"] = "after"
    times: int = 1
    spacing: int = 1
    matches: int = 0


@dataclass
class CuttingProxy:
    port: int
    #: Server bytes between cuts, drawn per connection; None relays without byte cuts.
    every: tuple[int, int] | None = None
    rules: list[CutRule] = field(default_factory=list)
    cuts: int = 0
    connections: int = 0
    #: Server output removed before the client sees it (a NAT or server that loses IDLE's pushes), and how often.
    swallow: re.Pattern[bytes] | None = None
    swallowed: int = 0
    #: Hold each FETCH completion back behind the next command's replies (see the module's docstring).
    reorder: bool = False
    reordered: int = 0
    seed: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def budget(self) -> int | None:
        with self._lock:
            self.connections += 1
            return self._random.randint(*self.every) if self.every else None

    def rule_for(self, data: bytes) -> tuple[bool, CutRule | None]:
        """Whether ``data`` matched a rule (the caller then forgets it), and the rule that cuts now."""
        with self._lock:
            for rule in self.rules:
                if rule.times > 0 and re.search(rule.pattern, data, re.MULTILINE):
                    rule.matches += 1
                    if (rule.matches - 1) % rule.spacing == 0:
                        rule.times -= 1
                        return True, rule
                    return True, None
        return False, None

    def count_cut(self) -> None:
        with self._lock:
            self.cuts += 1


class _Link:
    """One client connection and its upstream twin; a cut closes both.

    A cut only shuts the sockets down (which wakes the other direction's thread); each socket is closed
    once both threads have let go of it. Closing an ``SSLSocket`` while another thread is inside OpenSSL
    on it frees its descriptor mid-write: the number is reused (a pipe ``Popen`` had just made) and the
    rest of the TLS record lands there — the 10k proof's harness hung twice on such a pipe.
    """

    def __init__(self, proxy: CuttingProxy, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.budget = proxy.budget()
        self.cut_on_reply = False
        self.closed = threading.Event()
        self._running = 2  # the two directions' threads
        self._lock = threading.Lock()
        self._held: list[bytes] = []  # FETCH completions held back (``reorder``)
        self._responses = _Responses()
        self._sending = threading.Lock()

    def cut(self) -> None:
        if not self.closed.is_set():
            self.proxy.count_cut()
        self.close()

    def close(self) -> None:
        """Stop both directions: shut the sockets down (their threads close them on their way out)."""
        self.closed.set()
        for sock in (self.client, self.upstream):
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the descriptor stays open: no reuse yet

    def _finished(self) -> None:
        """One direction's thread is done; the last one out closes the sockets."""
        self.close()
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            for sock in (self.client, self.upstream):
                sock.close()

    def from_client(self) -> None:
        pending = b""
        try:
            while not self.closed.is_set():
                data = self.client.recv(65536)
                if not data:
                    break
                pending = (pending + data)[-4096:]  # a pattern may span two reads
                matched, rule = self.proxy.rule_for(pending) if self.proxy.rules else (False, None)
                if matched:
                    pending = b""  # each command counts once
                if rule is not None:
                    if rule.when == "before":
                        self.cut()
                        return
                    self.cut_on_reply = True
                self.upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._finished()

    def from_server(self) -> None:
        try:
            while not self.closed.is_set():
                data = self.upstream.recv(65536)
                if not data:
                    break
                if self.cut_on_reply:
                    self.cut()
                    return
                if self.proxy.swallow is not None:
                    data, count = self.proxy.swallow.subn(b"", data)
                    self.proxy.swallowed += count
                    if not data:
                        continue
                if self.budget is not None:
                    if len(data) >= self.budget:
                        self.client.sendall(data[: self.budget])
                        self.cut()
                        return
                    self.budget -= len(data)
                if self.proxy.reorder:
                    self._send_reordered(data)
                else:
                    self.client.sendall(data)
        except OSError:
            pass
        finally:
            self._finished()

    def _send_reordered(self, data: bytes) -> None:
        """Send the whole responses in ``data`` with a FETCH completion held back behind the next response;
        a completion that comes while one is held goes first (so those two complete out of order)."""
        with self._sending:
            out: list[bytes] = []
            for response in self._responses.feed(data):
                if _FETCH_COMPLETION.fullmatch(response) is None:
                    out.append(response)
                    out += self._held  # behind the next command's first response
                elif self._held:
                    out.append(response)
                    out += self._held  # the later command completes first
                else:
                    self._held = [response]
                    continue
                if self._held:
                    with self.proxy._lock:
                        self.proxy.reordered += 1
                    self._held = []
            if out:
                self.client.sendall(b"".join(out))
            held = bool(self._held)
        if held:
            threading.Timer(_HOLD_SECONDS, self._send_held).start()

    def _send_held(self) -> None:
        """The server sent nothing more: the held completions go now."""
        with self._sending:
            held, self._held = self._held, []
            if held and not self.closed.is_set():
                with suppress(OSError):
                    self.client.sendall(b"".join(held))


class _Responses:
    """Cuts the server's stream into whole responses (lines, with the literals inside them)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The responses ``data`` completes; the rest waits for more."""
        buffer = self._buffer + data
        found: list[bytes] = []
        start = position = 0
        while (end := buffer.find(b"\r\n", position)) >= 0:
            literal = _LITERAL_AT_END.search(buffer, position, end + 2)
            if literal is None:  # the response ends here
                found.append(buffer[start : end + 2])
                start = position = end + 2
                continue
            position = end + 2 + int(literal.group(1))  # past the literal, to the rest of the line
            if position > len(buffer):
                break
        self._buffer = buffer[start:]
        return found


@contextmanager
def cutting_proxy(
    upstream_port: int,
    cert_file: Path,
    key_file: Path,
    ca_file: Path,
    *,
    every: tuple[int, int] | None = None,
    rules: list[CutRule] | None = None,
    seed: int = 1,
    swallow: bytes | None = None,
    reorder: bool = False,
) -> Iterator[CuttingProxy]:
    """A proxy on a free loopback port in front of the TLS server on ``upstream_port``."""
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert_file, key_file)
    connecting = ssl.create_default_context(cafile=str(ca_file))
    links: list[_Link] = []
    proxy = CuttingProxy(
        port=0,
        every=every,
        rules=list(rules or []),
        seed=seed,
        swallow=re.compile(swallow) if swallow else None,
        reorder=reorder,
    )

    def start_link(raw: socket.socket) -> None:
        try:
            client = serving.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()
            return
        try:
            upstream = connecting.wrap_socket(
                socket.create_connection(("127.0.0.1", upstream_port)), server_hostname="localhost"
            )
        except OSError:
            client.close()
            return
        link = _Link(proxy, client, upstream)
        links.append(link)
        threading.Thread(target=link.from_client, daemon=True).start()
        threading.Thread(target=link.from_server, daemon=True).start()

    with listening(start_link) as port:
        proxy.port = port
        try:
            yield proxy
        finally:
            for link in links:
                link.close()
