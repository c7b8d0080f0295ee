"""Where postroom keeps its files: the vault, its key file, connection profiles.

``POSTROOM_HOME`` overrides the per-OS default (``~/.config/postroom`` on Linux,
``~/Library/Application Support/postroom`` on macOS, ``%APPDATA%\\postroom`` on Windows).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import platformdirs

__all__ = ["data_dir", "home_dir", "locked", "process_running", "write_private_file"]


def home_dir() -> Path:
    """postroom's folder for this user, created (owner-only) if missing."""
    override = os.environ.get("POSTROOM_HOME")
    path = Path(override) if override else Path(platformdirs.user_config_dir("postroom", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a process that cannot be signalled counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def data_dir() -> Path:
    """postroom's folder for data it keeps (the bots' ledger, the embedded server's mail): ``POSTROOM_DATA``,
    else ``data/`` in ``POSTROOM_HOME``, else the OS's per-user data folder; created owner-only."""
    override = os.environ.get("POSTROOM_DATA")
    home = os.environ.get("POSTROOM_HOME")
    if override:
        path = Path(override)
    elif home:
        path = Path(home) / "data"
    else:
        path = Path(platformdirs.user_data_dir("postroom", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` atomically to ``path``, readable only by its owner.

    The bytes go to a temp file of its own (a unique name per writer, so two threads never
    share one) in the same folder, which then replaces ``path``: a crash never leaves a
    half-written vault or profile behind.
    """
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


_thread_locks: dict[Path, threading.RLock] = {}
_guard = threading.Lock()


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock (a ``.lock`` file beside it) for a read-modify-write: other threads and
    processes that want it wait."""
    key = path.resolve()
    with _guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
    with thread_lock, path.with_suffix(".lock").open("a+b") as handle:
        _lock_file(handle.fileno())
        try:
            yield
        finally:
            _unlock_file(handle.fileno())


if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)

    def _unlock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
