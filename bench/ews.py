"""EWS bench on the loopback EWS stand-in: ``python -m bench.ews [--size 10000]``.

One child process serves the EWS stand-in (tests/servers/ews.py, not Exchange) with the IMAP bench's
mailbox mix; each case runs in a fresh child process. For each it prints wall time, EWS requests and
reply bytes per 1,000 messages, the stand-in's own CPU, and the client's CPU and peak memory:

- ``postroom-ews``: the loop reading subject, sender, date, text body and attachment names;
- ``exchangelib``: exchangelib used directly for the same fields (``only()``, ``order_by()``), the way its
  docs show.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.children import report, run_child, served
from bench.mailbox import generate

USER, PASSWORD = "bench@example.test", "bench-Pa55word"
CASES = ["postroom-ews", "exchangelib"]


def serve(size: int) -> None:
    import tempfile

    from tests.servers.ews import ews_server

    with tempfile.TemporaryDirectory(prefix="ews-bench-") as folder, ews_server(Path(folder), {USER: PASSWORD}) as ews:
        for raw in generate(size):
            ews.deliver(raw)
        print(json.dumps({"url": ews.url, "ca": str(ews.ca_file)}), flush=True)
        sys.stdin.read()


def _stats(where: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=where["ca"])
    stats_url = where["url"].replace("/EWS/Exchange.asmx", "/_standin/stats")
    with urllib.request.urlopen(stats_url, context=context) as reply:  # noqa: S310 - the loopback stand-in
        found: dict[str, Any] = json.loads(reply.read())
    return found


def _report(start: float, count: int) -> None:
    report(start, count)


def case_postroom(where: dict[str, Any]) -> None:
    import postroom
    from postroom import Basic, Ews, Variable

    config = Ews(
        url=where["url"], ca_file=where["ca"], version="Exchange2016", auth=Basic(Variable("U"), Variable("P"))
    )
    with postroom.connect("bench", config, variables={"U": USER, "P": PASSWORD}) as session:
        count = 0
        start = time.perf_counter()
        for message in postroom.messages(session, order="oldest"):
            _ = (message.subject, str(message.from_ or ""), message.sent_date, message.attachment_names, message.text)
            count += 1
        _report(start, count)


def case_exchangelib(where: dict[str, Any]) -> None:
    from exchangelib import BASIC, DELEGATE, Account, Build, Configuration, Credentials, Version

    config = Configuration(
        service_endpoint=where["url"],
        credentials=Credentials(USER, PASSWORD),
        auth_type=BASIC,
        version=Version(build=Build(15, 1)),
    )
    account = Account(USER, config=config, autodiscover=False, access_type=DELEGATE)
    count = 0
    start = time.perf_counter()
    query = account.inbox.all().only("subject", "author", "datetime_sent", "text_body", "attachments")
    for item in query.order_by("datetime_received"):
        _ = (item.subject, item.author, item.datetime_sent, item.text_body, [a.name for a in item.attachments or ()])
        count += 1
    _report(start, count)


_CASES = {"postroom-ews": case_postroom, "exchangelib": case_exchangelib}


def run_case(name: str, where: dict[str, Any]) -> dict[str, Any]:
    before = _stats(where)
    env = {**os.environ, "REQUESTS_CA_BUNDLE": where["ca"]}  # exchangelib verifies with requests' bundle
    result = run_child("bench.ews", name, where, env=env)
    after = _stats(where)
    if "failed" not in result:
        result.update(
            requests=after["requests"] - before["requests"],
            bytes=after["bytes_out"] - before["bytes_out"],
            server_cpu=after["cpu"] - before["cpu"],
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=CASES, choices=CASES)
    args = parser.parse_args()
    with served("bench.ews", args.size) as where:
        print(f"N = {args.size} on the EWS stand-in", flush=True)
        _run_cases(args.cases, args.runs, where)


def _run_cases(cases: list[str], repeat: int, where: dict[str, Any]) -> None:
    rows: dict[str, Any] = {}
    for case in cases:
        runs = [run_case(case, where) for _ in range(repeat)]
        good = [r for r in runs if "failed" not in r]
        if not good:
            print(f"  {case:13} failed: {runs[0]['failed']}", flush=True)
            continue
        best = min(good, key=lambda r: r["seconds"])
        median = statistics.median(r["seconds"] for r in good)
        per_k = 1000 / max(best["messages"], 1)
        rows[case] = {**best, "seconds_median": median}
        print(
            f"  {case:13} {median:7.2f} s  {best['requests'] * per_k:6.1f} requests/1k  "
            f"{best['bytes'] * per_k / 1e6:6.2f} MB/1k  server cpu {best['server_cpu']:6.2f} s  "
            f"client cpu {best['cpu']:6.2f} s  peak {best['peak_mb']:5.0f} MB  ({best['messages']} messages)",
            flush=True,
        )
    ours, theirs = rows.get("postroom-ews"), rows.get("exchangelib")
    if ours and theirs:
        print(f"  postroom-ews vs exchangelib: {theirs['seconds_median'] / ours['seconds_median']:5.2f}x", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve(int(sys.argv[2]))
    elif sys.argv[1:2] == ["case"]:
        _CASES[sys.argv[2]](json.loads(sys.argv[3]))
    else:
        main()
