"""Run the loop benchmark: ``python -m bench.run [--sizes 2000 10000] [--runs 3]``.

Starts its own Dovecot (the test suite's harness), fills one mailbox per size
with :mod:`bench.mailbox`, warms the page cache, then runs every case in a fresh
child process: ``--warmup`` runs that are not counted (a server builds caches
on first use: Dovecot parses every message for BODYSTRUCTURE and the header
fields the first time a client asks for them, which made the first structure-first
loop over a fresh 10,000-message mailbox 35% slower than the next), then ``--runs``
counted ones. Prints msg/s (median), ratios against the baselines measured in the
same run, client CPU and client peak memory (``os.wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers.dovecot import SHARED_PASSWORD, Dovecot

from bench.mailbox import generate

CASES = ["postroom", "postroom-headers", "imaplib-raw", "imaplib-parse", "imaptools-bulk", "imaptools-default"]
TIMEOUT = 1800


def run_case(name: str, dovecot: Dovecot, user: str) -> dict[str, Any]:
    assert dovecot.certs is not None
    command = [
        sys.executable,
        "-m",
        "bench.cases",
        name,
        "localhost",
        str(dovecot.ports["imaps"]),
        str(dovecot.certs.ca_file),
        user,
        SHARED_PASSWORD,
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parent.parent
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = process.stdout.read().decode(), process.stderr.read().decode()
    if status != 0 or not out.strip():
        last = (err.strip().splitlines() or ["no output"])[-1]
        return {"case": name, "failed": last[:160], "wall": time.perf_counter() - started}
    result = json.loads(out.strip().splitlines()[-1])
    result.update(case=name, cpu=usage.ru_utime + usage.ru_stime, peak_mb=usage.ru_maxrss / 1024)
    return result


def fill(dovecot: Dovecot, size: int) -> tuple[str, float]:
    user = f"bench-{size}@example.test"
    dovecot.add_user(user)
    started = time.perf_counter()
    megabytes = 0.0

    def counted() -> Any:
        nonlocal megabytes
        for raw in generate(size):
            megabytes += len(raw) / 1e6
            yield raw

    dovecot.deliver_many(user, counted())
    print(f"  filled {size} messages ({megabytes:.0f} MB) in {time.perf_counter() - started:.1f} s", flush=True)
    return user, megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="Uncounted runs of each case before the counted ones.")
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    parser.add_argument("--json", type=Path, help="Also write the results to this file.")
    args = parser.parse_args()
    dovecot = Dovecot.start()
    report: dict[str, Any] = {"sizes": {}}
    try:
        for size in args.sizes:
            print(f"N = {size}", flush=True)
            user, megabytes = fill(dovecot, size)
            run_case("imaplib-raw", dovecot, user)  # warm the page cache and Dovecot's index
            check = json.loads(
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.cases",
                        "check",
                        "localhost",
                        str(dovecot.ports["imaps"]),
                        str(dovecot.certs.ca_file),
                        user,
                        SHARED_PASSWORD,
                    ],  # type: ignore[union-attr]
                    capture_output=True,
                    text=True,
                    timeout=TIMEOUT,
                    check=True,
                    cwd=Path(__file__).resolve().parent.parent,
                ).stdout
            )
            differing = len({m["key"] for m in check["mismatches"]})
            equal = check["compared"] - differing
            print(f"  fields equal to a full policy=default parse: {equal} of {check['compared']} messages", flush=True)
            for mismatch in check["mismatches"][:5]:
                print(f"    differs: {mismatch}", flush=True)
            rows = {}
            for case in args.cases:
                for _ in range(args.warmup):
                    run_case(case, dovecot, user)
                runs = [run_case(case, dovecot, user) for _ in range(args.runs)]
                good = [r for r in runs if "failed" not in r]
                if not good:
                    rows[case] = {"failed": runs[0]["failed"]}
                    print(f"  {case:18} failed: {runs[0]['failed']}", flush=True)
                    continue
                median = statistics.median(r["seconds"] for r in good)
                rows[case] = {
                    "seconds_min": min(r["seconds"] for r in good),
                    "seconds_median": median,
                    "msg_per_s": size / median,
                    "cpu_s": statistics.median(r["cpu"] for r in good),
                    "peak_mb": max(r["peak_mb"] for r in good),
                    "messages": good[0]["messages"],
                }
                print(
                    f"  {case:18} {size / median:9,.0f} msg/s  median {median:7.2f} s  "
                    f"peak {rows[case]['peak_mb']:6.0f} MB  cpu {rows[case]['cpu_s']:6.2f} s",
                    flush=True,
                )
            report["sizes"][size] = {"megabytes": megabytes, "check": check, "cases": rows}
            print_ratios(size, rows)
    finally:
        dovecot.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def print_ratios(size: int, rows: dict[str, Any]) -> None:
    ours = rows.get("postroom", {}).get("msg_per_s")
    if not ours:
        return
    for baseline in ("imaptools-bulk", "imaplib-raw", "imaplib-parse", "imaptools-default"):
        theirs = rows.get(baseline, {}).get("msg_per_s")
        if theirs:
            print(f"  ratio postroom / {baseline:17} {ours / theirs:5.2f}x", flush=True)
        elif baseline in rows:
            print(f"  ratio postroom / {baseline:17}   n/a ({rows[baseline].get('failed', 'failed')[:60]})")


if __name__ == "__main__":
    main()
