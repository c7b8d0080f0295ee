"""Starts processes for a thread-heavy parent: ``python tests/worker_launcher.py``, one JSON request a line.

The exactly-once harness restarts killed workers from a process full of threads (proxies, the SMTP
server, Dovecot's helpers). Forking there hung twice inside ``Popen`` (vfork: a fault in the child; fork:
a wait for a child that had started), so the harness asks this single-threaded process instead, started
before the threads. A request is ``{"args", "env", "cwd", "log"}``; the answer ``{"pid"}`` or
``{"error"}``. Children get their own session (a kill of the group takes all their threads and
children) and are reaped here as they end (SIGCHLD ignored), so ``kill(pid, 0)`` tells when one is gone.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel as they end
    for line in sys.stdin:
        request = json.loads(line)
        try:
            with Path(request["log"]).open("ab") as log:
                child = subprocess.Popen(
                    request["args"],
                    env=request["env"],
                    cwd=request["cwd"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            answer: dict[str, object] = {"pid": child.pid}
        except OSError as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
