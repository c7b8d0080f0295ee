"""A loopback listener on a free port that hands each connection to a handler in its own thread: what the
test's hand-made servers (silent, scripted, cutting) have in common; and a real server's process run from a
temp dir of its own (Redis, RabbitMQ)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

__all__ = ["listening", "started_in_temp_dir"]


class _Startable(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


S = TypeVar("S", bound=_Startable)


@contextmanager
def started_in_temp_dir(prefix: str, make: Callable[[Path], S]) -> Iterator[S]:
    """``make(folder)`` for a new temp dir, started; stopped and its folder removed when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    server = make(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def listening(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """Accept connections on 127.0.0.1 until the block ends; ``handle`` runs per connection. Yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port: int = listener.getsockname()[1]
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(timeout=2)
        listener.close()
