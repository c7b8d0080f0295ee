"""The runner API's token endpoint under load: ``python -m bench.server_tokens [--runners 50]``.

Starts the real ``postroom server`` (on SQLite, then on PostgreSQL), the test authorization server and
an administrator's shared sign-in, creates ``--runners`` runner keys, then measures what a runner sees
when it asks for the connection's (cached) access token through ``postroom.credentials.server_api`` —
the call ``Managed`` makes:

- **burst**: every runner asks at the same instant (``--rounds`` times): the latency of each answer;
- **paced**: every runner asks once every ``--period`` seconds (at its own phase), for ``--seconds``: 50
  runners at 1 s are about 50 requests a second, far more than a fleet asks (a run asks at connect and when
  the mail server refuses a token) — the latency a runner sees in operation;
- **steady**: every runner asks again as soon as it has its answer, for ``--seconds``: throughput and
  latency under saturation.

The baseline, measured in the same run: the same number of threads reading an access token held in the
local vault (what a bot with its own OAuth2 sign-in does). The server's CPU (its process and workers,
and PostgreSQL's backends) is read from ``/proc`` before and after, per request. PostgreSQL here is the
suite's cluster (``fsync=off``), so its figures leave out a disk's flush.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.server_flows import Team, create_connection, runner_key
from tests.servers.oauth import oauth_server
from tests.servers.postgres import postgres_server
from tests.servers.postroom_server import ServerUnderTest

from postroom.auth.oauth.tokens import TokenRecord, VaultTokenStore
from postroom.credentials import Secret
from postroom.credentials.server_api import ask_server
from postroom.credentials.vault import CredentialVault

CONNECTION = "contoso-mail"
SIGNER = "bench@example.test"


def _tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and every process below it, as ``/proc`` has them now."""
    total, pending = 0.0, [root]
    ticks = os.sysconf("SC_CLK_TCK")
    while pending:
        pid = pending.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _burst(ask: Callable[[int], None], runners: int, rounds: int) -> list[float]:
    """Every runner asks at once, ``rounds`` times; the latency of every answer, in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(runners)

    def runner(index: int) -> None:
        for _ in range(rounds):
            barrier.wait()
            started = time.perf_counter()
            ask(index)
            with lock:
                latencies.append((time.perf_counter() - started) * 1000)

    _run_threads(runner, runners)
    return latencies


def _paced(ask: Callable[[int], None], runners: int, seconds: float, period: float) -> list[float]:
    """Every runner asks once per ``period``, spread over the period; the latency of every answer, in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = time.perf_counter() + 0.5
    stop_at = start + seconds

    def runner(index: int) -> None:
        mine = []
        tick = start + period * index / runners
        while tick < stop_at:
            time.sleep(max(0.0, tick - time.perf_counter()))
            started = time.perf_counter()
            ask(index)
            mine.append((time.perf_counter() - started) * 1000)
            tick += period
        with lock:
            latencies.extend(mine)

    _run_threads(runner, runners)
    return latencies


def _steady(ask: Callable[[int], None], runners: int, seconds: float) -> tuple[list[float], float]:
    """Every runner asks again as soon as it is answered, for ``seconds``: latencies (ms) and wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def runner(index: int) -> None:
        mine = []
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            ask(index)
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    _run_threads(runner, runners)
    return latencies, time.perf_counter() - started


def _run_threads(target: Callable[[int], None], count: int) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            target(index)
        except BaseException as failed:  # reported below, the bench stops
            errors.append(failed)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


@contextmanager
def _server(folder: Path, database_url: str | None, runners: int, workers: int) -> Iterator[tuple[Any, list[str]]]:
    with oauth_server(folder / "oauth") as oauth:
        server = ServerUnderTest(
            home=folder / "home", ca_file=Path(oauth.ca_file), database_url=database_url, workers=workers
        )
        try:
            team = Team.start(server)
            create_connection(team.admin, oauth)
            start = team.admin.post(
                f"/connections/{CONNECTION}/sign-in", from_page=f"/connections/{CONNECTION}", follow=False
            )
            back = team.admin.sign_in_at_provider(start, oauth, SIGNER)
            assert 'id="shared-status">Active' in back.text, back.text
            keys = [runner_key(server, f"runner-{i}") for i in range(runners)]
            yield server, keys
        finally:
            server.stop()


def _measure(
    name: str, ask: Callable[[int], None], arguments: argparse.Namespace, cpu: Callable[[], float]
) -> dict[str, Any]:
    for index in range(arguments.runners):  # warm: every runner's first request (connections, caches)
        ask(index)
    print(f"{name}: paced", file=sys.stderr, flush=True)
    paced = _paced(ask, arguments.runners, arguments.seconds, arguments.period)
    print(f"{name}: bursts, then steady", file=sys.stderr, flush=True)
    before = cpu()
    burst = _burst(ask, arguments.runners, arguments.rounds)
    steady, wall = _steady(ask, arguments.runners, arguments.seconds)
    used = cpu() - before
    requests = len(burst) + len(steady)
    return {
        "case": name,
        "paced_p50": statistics.median(paced),
        "paced_p99": _percentile(paced, 0.99),
        "burst_p50": statistics.median(burst),
        "burst_p99": _percentile(burst, 0.99),
        "steady_p50": statistics.median(steady),
        "steady_p99": _percentile(steady, 0.99),
        "per_second": len(steady) / wall,
        "server_cpu_ms": used * 1000 / requests if requests else 0.0,
    }


def _vault_case(folder: Path, arguments: argparse.Namespace) -> dict[str, Any]:
    """The baseline: an access token held in the local vault, read by ``--runners`` threads."""
    vault = CredentialVault(folder / "vault.bin")
    store = VaultTokenStore(vault, "bench")
    now = time.time()
    record = TokenRecord(
        Secret("a" * 1200), now + 3600, Secret("r" * 400), ("IMAP.AccessAsUser.All",), SIGNER, "f", now, "pkce"
    )
    store.save(record)

    def ask(_index: int) -> None:
        found = store.load()
        assert found is not None
        assert not found.expires_soon()

    return _measure("local vault", ask, arguments, lambda: 0.0)


def _server_case(
    name: str, server: ServerUnderTest, keys: list[str], arguments: argparse.Namespace, extra_cpu: Callable[[], float]
) -> dict[str, Any]:
    secrets = [Secret(key) for key in keys]

    def ask(index: int) -> None:
        status, answer = ask_server(
            server.url, secrets[index], f"/api/v1/connections/{CONNECTION}/token", {"run_id": f"bench-{index}"}
        )
        if status != 200 or not answer.get("access_token"):
            raise AssertionError(f"the token endpoint answered {status}: {answer}")

    assert server.process is not None
    pid = server.process.pid
    return _measure(name, ask, arguments, lambda: _tree_cpu(pid) + extra_cpu())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runners", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--period", type=float, default=1.0, help="paced: seconds between a runner's requests")
    parser.add_argument("--workers", type=int, default=1, help="the server's worker processes")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    arguments = parser.parse_args()
    results = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="postroom-token-bench-")))
        results.append(_vault_case(folder, arguments))
        for database in arguments.databases:
            url, extra_cpu = None, lambda: 0.0
            if database == "postgres":
                postgres = stack.enter_context(postgres_server())
                url = postgres.create_database("bench")
                postmaster = int((postgres.folder / "data" / "postmaster.pid").read_text().split()[0])
                extra_cpu = functools.partial(_tree_cpu, postmaster)
            with _server(folder / database, url, arguments.runners, arguments.workers) as (server, keys):
                results.append(_server_case(f"server, {database}", server, keys, arguments, extra_cpu))
    print(
        f"{arguments.runners} runners: paced (one request each per {arguments.period:g} s), {arguments.rounds} "
        f"bursts (all at once), {arguments.seconds:.0f} s steady (back to back); {arguments.workers} server "
        "worker(s); latency in ms as the runner sees it"
    )
    columns = ("paced p50", "paced p99", "burst p50", "burst p99", "steady p50", "steady p99", "req/s", "CPU/req")
    print(f"{'case':<20} " + " ".join(f"{name:>10}" for name in columns))
    for row in results:
        print(
            f"{row['case']:<20} {row['paced_p50']:>10.2f} {row['paced_p99']:>10.2f} {row['burst_p50']:>10.2f} "
            f"{row['burst_p99']:>10.2f} {row['steady_p50']:>10.2f} {row['steady_p99']:>10.2f} "
            f"{row['per_second']:>10.0f} {row['server_cpu_ms']:>7.2f} ms"
        )
    baseline = results[0]
    for row in results[1:]:
        verdicts = ", ".join(
            f"{mode} p99 {row[f'{mode}_p99']:.1f} ms ({row[f'{mode}_p99'] / baseline[f'{mode}_p99']:.0f}x the local "
            f"vault's): {'under' if row[f'{mode}_p99'] < 20 else 'OVER'} 20 ms"
            for mode in ("paced", "burst", "steady")
        )
        print(f"{row['case']}: {verdicts}")


if __name__ == "__main__":
    main()
