"""Files a bot saves, each exactly once, complete or not at all, even across a crash and a re-run.

A file is written whole under a temporary name, then given its final name with a link that never replaces
an existing file (``name (2).pdf`` when ``name.pdf`` is another message's). When a step is re-run after a
crash (its journal entry says it started), a file with the same name pattern, size and SHA-256 that is
already there is the one the crashed run made: it is kept, not saved a second time; the temporary file a
crashed run left is removed.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from postroom.message.filenames import name_variants
from postroom.paths import process_running

__all__ = ["place_file"]


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_leftovers(folder: Path, name: str) -> None:
    """Temporary files of ``name`` that a process which died (on this host) left behind."""
    for leftover in folder.glob(f".{glob.escape(name)}.*.partial"):
        pid = leftover.name.removeprefix(f".{name}.").split(".", 1)[0]
        if pid.isdigit() and not process_running(int(pid)):
            leftover.unlink(missing_ok=True)


def place_file(
    folder: Path,
    name: str,
    produce: Callable[[BinaryIO], int],
    *,
    rerun: bool,
    flush: bool = False,
    before_placing: Callable[[], None] = lambda: None,
) -> tuple[Path, int]:
    """Write what ``produce`` streams into ``folder`` under ``name`` (or the next free ``name (N)``); with
    ``rerun``, adopt an identical file a crashed earlier try left; with ``flush``, the file is on disk before
    this returns. Returns the path and its size."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if rerun:
        _remove_leftovers(folder, name)
    temporary = folder / f".{name}.{os.getpid()}.{id(produce)}.partial"
    try:
        with temporary.open("w+b") as handle:
            size = produce(handle)
            if flush:  # durability: power — on disk before the ledger says the step is done
                handle.flush()
                os.fsync(handle.fileno())
        if rerun:
            digest = _digest(temporary)
            for candidate in name_variants(folder, name):
                if not os.path.lexists(candidate):
                    break
                if candidate.is_file() and candidate.stat().st_size == size and _digest(candidate) == digest:
                    return candidate, size
        before_placing()  # (a bot checks here that its claim still holds: a taken-over worker places nothing)
        for candidate in name_variants(folder, name):
            if candidate.resolve().parent != folder:  # defence in depth: never outside the folder
                raise ValueError(f"refusing to write outside {folder}")
            try:
                os.link(temporary, candidate)
            except FileExistsError:
                continue
            except OSError:  # a file system without hard links: reserve the name, then replace it
                try:
                    os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)))
                except FileExistsError:
                    continue
                temporary.replace(candidate)
            return candidate, size
        raise FileExistsError(f"no free name for {name!r} in {folder}")
    finally:
        temporary.unlink(missing_ok=True)
