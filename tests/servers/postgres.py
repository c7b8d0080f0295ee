"""A real PostgreSQL for the tests: Debian's server binaries, a cluster made with initdb under a temp dir,
started with pg_ctl on a free loopback port (never the system's service). As root it runs as ``postgres``,
since PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers.dovecot import free_port

__all__ = ["PostgresNotInstalled", "PostgresUnderTest", "postgres_server"]


class PostgresNotInstalled(RuntimeError):
    """No PostgreSQL server binaries: Debian's ``postgresql`` package has them."""


@dataclass
class PostgresUnderTest:
    port: int
    user: str
    folder: Path

    def url(self, database: str = "postroom") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres", autocommit=True
        ) as db:
            db.execute(f'CREATE DATABASE "{name}"')  # a test's own name, never input from outside
        return self.url(name)


def _binaries() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        located = shutil.which("pg_ctl")
        if located is None:
            raise PostgresNotInstalled("PostgreSQL's server is not installed: sudo apt-get install postgresql")
        return Path(located).parent
    return Path(found[-1]).parent


@contextmanager
def postgres_server() -> Iterator[PostgresUnderTest]:
    """A PostgreSQL cluster of its own, trusting local connections, for one test run."""
    binaries = _binaries()
    folder = Path(tempfile.mkdtemp(prefix="postroom-postgres-"))
    data = folder / "data"
    run_as: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        run_as = ["runuser", "-u", user, "--"]
    port = free_port()
    subprocess.run(
        [*run_as, str(binaries / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-o", options, "-w", "start"],
        check=True,
        capture_output=True,
    )
    server = PostgresUnderTest(port=port, user=user, folder=folder)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.create_database("postroom")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield server
    finally:
        subprocess.run(
            [*run_as, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)
