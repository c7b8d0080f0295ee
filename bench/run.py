"""Run the loop benchmark: ``python -m bench.run [--sizes 2000 10000] [--runs 3]``.

Starts its own Dovecot (the test suite's harness), fills one mailbox per size
with :mod:`bench.mailbox`, warms the page cache, then runs every case in a fresh
child process: ``--warmup`` runs that are not counted (a server builds caches
on first use: Dovecot parses every message for BODYSTRUCTURE and the header
fields the first time a client asks for them, which made the first structure-first
loop over a fresh 10,000-message mailbox 35% slower than the next), then ``--runs``
counted ones. Prints msg/s (median), ratios against the baselines measured in the
same run, client CPU (``os.wait4``) and client peak memory (the case's own ``VmHWM``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.servers.dovecot import SHARED_PASSWORD, Dovecot

from bench.mailbox import generate

CASES = [
    "postroom",
    "postroom-delayed",
    "postroom-headers",
    "imaplib-raw",
    "imaplib-parse",
    "imaptools-bulk",
    "imaptools-default",
    "postroom-pop3",
    "poplib-parse",
    "postroom-move",
    "postroom-save",
    "imaptools-save",
    "postroom-send",
    "smtplib-per-message",
    "smtplib-reused",
]
#: Cases that talk POP3 (given the POP3S port) or SMTP (the submission port); the others IMAPS.
POP3_CASES = {"postroom-pop3", "poplib-parse"}
SMTP_CASES = {"postroom-send", "smtplib-per-message", "smtplib-reused"}
#: The SMTP server (in this process, delivering into Dovecot by LMTP), started when a send case runs.
SMTP: Any = None
#: ``postroom-delayed`` runs the loop through a proxy adding this many seconds each way (bench/delay.py).
DELAY = 0.025
#: That proxy's port, started when the case runs.
DELAYED_PORT: int | None = None


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dovecot_cpu(dovecot: Dovecot) -> float:
    """Seconds of CPU Dovecot spent: its master's own and its reaped children's (each imap/pop3 process
    ends with its connection, so a case's server CPU is the difference around it)."""
    assert dovecot._process is not None
    fields = Path(f"/proc/{dovecot._process.pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


TIMEOUT = 1800


def _port_for(name: str, dovecot: Dovecot) -> int:
    if name in SMTP_CASES:
        return int(SMTP.starttls_port)
    if name == "postroom-delayed":
        assert DELAYED_PORT is not None
        return DELAYED_PORT
    return int(dovecot.ports["pop3s" if name in POP3_CASES else "imaps"])


def run_case(name: str, dovecot: Dovecot, user: str) -> dict[str, Any]:
    assert dovecot.certs is not None
    command = [
        sys.executable,
        "-m",
        "bench.cases",
        name,
        "localhost",
        str(_port_for(name, dovecot)),
        str(dovecot.certs.ca_file),
        user,
        SHARED_PASSWORD,
    ]
    server_before = dovecot_cpu(dovecot) + _own_cpu()  # the SMTP server runs in this process
    smtp_before = (SMTP.connections, SMTP.logins) if SMTP is not None else (0, 0)
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
    time.sleep(0.2)  # the server's process for this connection exits and is reaped
    result.update(
        case=name,
        cpu=usage.ru_utime + usage.ru_stime,
        # the case's own peak (bench.children.own_peak_mb); wait4's carries this process's peak over
        peak_mb=result.get("peak_mb", usage.ru_maxrss / 1024),
        server_cpu=dovecot_cpu(dovecot) + _own_cpu() - server_before,
    )
    if name in SMTP_CASES:
        result.update(connections=SMTP.connections - smtp_before[0], logins=SMTP.logins - smtp_before[1])
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
    global SMTP, DELAYED_PORT
    dovecot = Dovecot.start()
    smtp_context = None
    delay_context = None
    if "postroom-delayed" in args.cases:
        from bench.delay import delaying_proxy

        delay_context = delaying_proxy(dovecot.ports["imaps"], DELAY)
        DELAYED_PORT = delay_context.__enter__()
    if SMTP_CASES & set(args.cases):
        import logging
        import warnings

        from tests.servers.smtp import smtp_server

        warnings.filterwarnings("ignore", message="Session.login_data is deprecated")  # aiosmtpd, about itself
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        logging.getLogger("mail.log").setLevel(logging.ERROR)

        smtp_context = smtp_server(dovecot)
        SMTP = smtp_context.__enter__()
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
                    "msg_per_s": good[0]["messages"] / median,
                    "cpu_s": statistics.median(r["cpu"] for r in good),
                    "server_cpu_s": statistics.median(r["server_cpu"] for r in good),
                    "peak_mb": max(r["peak_mb"] for r in good),
                    "messages": good[0]["messages"],
                    **{k: good[0][k] for k in ("connections", "logins", "megabytes") if k in good[0]},
                }
                server = rows[case]["server_cpu_s"]
                limit = f"  wall/server {median / server:5.2f}" if server > 0 else ""
                print(
                    f"  {case:18} {good[0]['messages'] / median:9,.0f} msg/s  median {median:7.2f} s  "
                    f"peak {rows[case]['peak_mb']:6.0f} MB  cpu {rows[case]['cpu_s']:6.2f} s  "
                    f"server cpu {server:6.2f} s{limit}"
                    + (
                        f"  connections {good[0]['connections']}  logins {good[0]['logins']}"
                        if case in SMTP_CASES
                        else ""
                    )
                    + (f"  {good[0]['megabytes'] / median:6.1f} MB/s written" if "megabytes" in good[0] else ""),
                    flush=True,
                )
            report["sizes"][size] = {"megabytes": megabytes, "check": check, "cases": rows}
            print_ratios(size, rows)
    finally:
        if smtp_context is not None:
            smtp_context.__exit__(None, None, None)
        if delay_context is not None:
            delay_context.__exit__(None, None, None)
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
    pop3, poplib_rate = rows.get("postroom-pop3", {}).get("msg_per_s"), rows.get("poplib-parse", {}).get("msg_per_s")
    if pop3 and poplib_rate:
        print(f"  ratio postroom-pop3 / poplib-parse   {pop3 / poplib_rate:5.2f}x", flush=True)
    delayed = rows.get("postroom-delayed", {}).get("msg_per_s")
    if delayed:
        shown = f"{delayed / ours:5.2f}x ({1000 * DELAY:.0f} ms each way)"
        print(f"  ratio postroom-delayed / postroom    {shown}", flush=True)


if __name__ == "__main__":
    main()
