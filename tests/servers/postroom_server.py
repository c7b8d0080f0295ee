"""postroom server as a user runs it: the real ``postroom server`` process, on a free loopback port.

It gets a home of its own (``POSTROOM_HOME``), so its SQLite database and key are made on first start
exactly as for a new user; or a PostgreSQL URL. Its stderr goes to a log file that the canary tests read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.servers.dovecot import free_port

__all__ = ["ServerUnderTest", "postroom_cli"]

POSTROOM = str(Path(sys.executable).parent / "postroom")


def postroom_cli(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``postroom ...`` with ``home`` as POSTROOM_HOME; fails the test on a non-zero exit."""
    environment = {**os.environ, "POSTROOM_HOME": str(home), **(env or {})}
    done = subprocess.run([POSTROOM, *args], env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"postroom {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done


@dataclass
class ServerUnderTest:
    home: Path
    ca_file: Path
    database_url: str | None = None
    public_base_url: str | None = None
    workers: int = 1
    #: Environment of the process beyond POSTROOM_HOME (e.g. POSTROOM_SERVER_KEEPALIVE_SECONDS).
    environment: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.home / "server.log"

    def args(self) -> list[str]:
        found = ["--port", str(self.port), "--ca-file", str(self.ca_file), "--workers", str(self.workers)]
        if self.database_url:
            found += ["--database", self.database_url]
        if self.public_base_url:
            found += ["--public-base-url", self.public_base_url]
        return found

    def cli(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        extra = ["--database", self.database_url] if self.database_url else []
        return postroom_cli(self.home, "server", *args, *extra, env=env)

    def start(self) -> ServerUnderTest:
        self.home.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, "POSTROOM_HOME": str(self.home), **self.environment}
        environment.pop("POSTROOM_SERVER_URL", None)
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [POSTROOM, "server", *self.args()], env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        self.starts += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"postroom server exited {self.process.returncode}: {self.log_file.read_text()}")
            try:
                if requests.get(self.url + "/api/v1/health", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"postroom server did not answer: {self.log_file.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def database(self) -> str:
        """The database's SQLAlchemy URL (the default SQLite file when none was given)."""
        return self.database_url or f"sqlite:///{self.home / 'data' / 'server' / 'server.sqlite3'}"

    def sql(self, statement: str) -> list[tuple[Any, ...]]:
        """Run ``statement`` on the server's database, as a test's way of moving time, breaking things or
        looking; the rows it returns."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.database.replace("postgresql://", "postgresql+psycopg://"))
        try:
            with engine.begin() as db:
                result = db.execute(sqlalchemy.text(statement))
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            engine.dispose()

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
