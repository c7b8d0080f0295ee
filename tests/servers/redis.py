"""A real Redis for the tests (Debian's ``redis-server``), on a free loopback port with its data under a temp
dir; it can be restarted on the same port, as an operator's restart would."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.dovecot import free_port
from tests.servers.listening import started_in_temp_dir

__all__ = ["RedisUnderTest", "redis_server"]


@dataclass
class RedisUnderTest:
    port: int
    folder: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("Redis is not installed: sudo apt-get install redis-server")
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            process.wait(10)

    def restart(self) -> None:
        """Stop and start again on the same port (the queue survives in its append-only file)."""
        self.stop()
        self.start()


def redis_server() -> AbstractContextManager[RedisUnderTest]:
    return started_in_temp_dir("postroom-redis-", lambda folder: RedisUnderTest(port=free_port(), folder=folder))
