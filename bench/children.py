"""What the stand-in benches (bench/graph.py, bench/ews.py) share: a server in a child process, each case
in a fresh child process of its own, measured with ``wait4``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["ROOT", "own_peak_mb", "report", "report_seconds", "run_child", "served"]


def own_peak_mb() -> float | None:
    """This process's peak resident memory since it started its program, in MB (Linux: ``VmHWM``).

    A child's ``wait4`` maximum is no use for that: Linux carries the parent's peak over into it at
    ``exec``, so every case of a bench that generated 3 GB of mail first reported the bench's own 106 MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@contextmanager
def served(module: str, size: int) -> Iterator[dict[str, Any]]:
    """``python -m MODULE serve SIZE`` running: what its first line says (where it listens), until the block ends."""
    server = subprocess.Popen(
        [sys.executable, "-m", module, "serve", str(size)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        text=True,
    )
    assert server.stdout is not None
    assert server.stdin is not None
    try:
        yield json.loads(server.stdout.readline())
    finally:
        server.stdin.close()
        server.wait(timeout=60)


def report(start: float, count: int, **extra: Any) -> None:
    """A case's result line: seconds since ``start`` (``time.perf_counter``), messages, its own peak memory."""
    import time

    report_seconds(time.perf_counter() - start, count, **extra)


def report_seconds(seconds: float, count: int, **extra: Any) -> None:
    """:func:`report` for a case that timed itself."""
    found: dict[str, Any] = {"seconds": seconds, "messages": count, **extra}
    peak = own_peak_mb()
    if peak is not None:
        found["peak_mb"] = peak
    print(json.dumps(found), flush=True)


def run_child(module: str, name: str, where: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """``python -m MODULE case NAME WHERE`` in a fresh process: its last JSON line, with its CPU and peak
    memory, or ``{"failed": …}`` with its last error line."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "case", name, json.dumps(where)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    if status != 0 or not out.strip():
        return {"case": name, "failed": (err.strip().splitlines() or ["no output"])[-1][:200]}
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result.setdefault("peak_mb", usage.ru_maxrss / 1024)  # (an upper bound: see own_peak_mb)
    result.update(case=name, cpu=usage.ru_utime + usage.ru_stime)
    return result
