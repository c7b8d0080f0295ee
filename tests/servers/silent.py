"""A TCP server that accepts connections and never says a word: the classic hung server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from tests.servers.listening import listening

__all__ = ["silent_server"]


@contextmanager
def silent_server() -> Iterator[int]:
    """Listen on a free loopback port; accept and hold connections without answering. Yields the port."""
    held: list[socket.socket] = []
    try:
        with listening(held.append) as port:
            yield port
    finally:
        for conn in held:
            conn.close()
