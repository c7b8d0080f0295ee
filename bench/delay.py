"""A TCP proxy that adds a fixed delay each way, as a server 25 ms away would (``tc`` is not available here).

Every chunk read on one side is written to the other ``delay`` seconds after it arrived, in order; nothing
is throttled, so a client that keeps several requests in flight pays the delay once per round trip it waits
for, not once per request. TLS passes through untouched (the proxy only moves bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["delaying_proxy"]


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - loop.time()))
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(deliver())
    try:
        while data := await reader.read(256 * 1024):
            queue.put_nowait((loop.time() + delay, data))
    except ConnectionError:
        pass
    finally:
        queue.put_nowait((loop.time() + delay, b""))
        await sender


@contextmanager
def delaying_proxy(upstream_port: int, delay: float) -> Iterator[int]:
    """A proxy on a free loopback port in front of ``upstream_port``, ``delay`` seconds each way; its port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            _pump(client_reader, server_writer, delay),
            _pump(server_reader, client_writer, delay),
            return_exceptions=True,
        )

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await server.serve_forever()

    def run() -> None:
        with contextlib.suppress(RuntimeError):  # stopped by the block's end, as meant
            loop.run_until_complete(serve())

    thread = threading.Thread(target=run, daemon=True, name="delaying-proxy")
    thread.start()
    ready.wait(10)
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
