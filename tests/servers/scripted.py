"""A line server that answers each command from a script: for replies no real server here sends.

Dovecot sends no POP3 response codes such as ``[LOGIN-DELAY]`` (RFC 2449), so the tests
that need them script the exchange: the greeting, then one reply per command prefix.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers.listening import listening

__all__ = ["scripted_server"]


@contextmanager
def scripted_server(greeting: bytes, replies: dict[bytes, bytes]) -> Iterator[int]:
    """Listen on a free loopback port. Each connection gets ``greeting``, then for every line the reply of
    the longest matching prefix in ``replies`` (``-ERR unknown`` otherwise). Yields the port."""

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            conn.sendall(greeting)
            for line in lines:
                matches = [prefix for prefix in replies if line.upper().startswith(prefix.upper())]
                conn.sendall(replies[max(matches, key=len)] if matches else b"-ERR unknown\r\n")
                if line.upper().startswith(b"QUIT"):
                    return

    with listening(serve) as port:
        yield port
