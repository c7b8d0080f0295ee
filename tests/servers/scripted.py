"""A line server that answers each command from a script: for replies no real server here sends.

Dovecot sends no POP3 response codes such as ``[LOGIN-DELAY]`` (RFC 2449), so the tests
that need them script the exchange: the greeting, then one reply per command prefix.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["scripted_server"]


@contextmanager
def scripted_server(greeting: bytes, replies: dict[bytes, bytes]) -> Iterator[int]:
    """Listen on a free loopback port. Each connection gets ``greeting``, then for every line the reply of
    the longest matching prefix in ``replies`` (``-ERR unknown`` otherwise). Yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            conn.sendall(greeting)
            for line in lines:
                matches = [prefix for prefix in replies if line.upper().startswith(prefix.upper())]
                conn.sendall(replies[max(matches, key=len)] if matches else b"-ERR unknown\r\n")
                if line.upper().startswith(b"QUIT"):
                    return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
