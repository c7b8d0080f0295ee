"""A real RabbitMQ for the tests (Debian's ``rabbitmq-server``): a node of its own on free loopback ports (AMQP,
Erlang distribution and its own epmd), with its data, cookie and logs under a temp dir. It can be restarted on
the same port with its queues kept, as an operator's restart would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.dovecot import free_port
from tests.servers.listening import started_in_temp_dir

__all__ = ["RabbitMqUnderTest", "rabbitmq_server"]

#: Debian's script without the wrapper in /usr/sbin that switches to the rabbitmq user.
_DEBIAN_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")


def _server_binary() -> str | None:
    if _DEBIAN_SERVER.exists():
        return str(_DEBIAN_SERVER)
    return shutil.which(
        "rabbitmq-server", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    )


#: An AMQP 0-9-1 client's protocol header; a broker that is up answers with its Connection.Start frame.
_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


@dataclass
class RabbitMqUnderTest:
    port: int
    folder: Path
    dist_port: int = field(default_factory=free_port)
    epmd_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.folder),  # the Erlang cookie goes here
            "RABBITMQ_NODENAME": f"postroom-tests-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(self.folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.folder / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.folder / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.folder / "rabbitmq.pid"),
        }

    def start(self) -> None:
        binary = _server_binary()
        if binary is None:
            raise RuntimeError("RabbitMQ is not installed: sudo apt-get install rabbitmq-server")
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq.conf").write_text(f"listeners.tcp.default = {self.port}\n")
        self._process = subprocess.Popen(
            [binary],
            env=self._environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its epmd and Erlang VM go with it on stop
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self._process.returncode}; see {self.folder / 'log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(_PROTOCOL_HEADER)
                    if sock.recv(8)[:1] == b"\x01":  # a method frame: Connection.Start
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("rabbitmq-server did not start within 60 s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # the node stops cleanly on TERM, its queues on disk
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        epmd = shutil.which("epmd")
        if epmd is not None:  # the node's own epmd daemonizes itself, out of the node's process group
            subprocess.run(
                [epmd, "-kill"],
                env=self._environment(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
                timeout=10,
            )

    def restart(self) -> None:
        """Stop and start again on the same port (durable queues and persistent messages survive)."""
        self.stop()
        self.start()


def rabbitmq_server() -> AbstractContextManager[RabbitMqUnderTest]:
    return started_in_temp_dir("postroom-rabbitmq-", lambda folder: RabbitMqUnderTest(port=free_port(), folder=folder))
