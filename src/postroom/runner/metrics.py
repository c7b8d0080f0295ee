"""Prometheus metrics of the runner and the worker: messages done or failed per bot, step latency, trigger
lag, and ledger claim conflicts. Served on ``metrics_port`` (``/metrics``) when a bot sets it."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["count_claim_conflict", "count_message", "observe_step", "serve_metrics", "set_trigger_lag"]

_lock = threading.Lock()
_metrics: dict[str, Any] | None = None


def _get() -> dict[str, Any] | None:
    global _metrics
    with _lock:
        if _metrics is None:
            try:
                from prometheus_client import Counter, Gauge, Histogram
            except ImportError:  # the bots extra is what brings it; without it, nothing is measured
                return None
            _metrics = {
                "messages": Counter("postroom_messages_total", "Messages processed, by outcome", ["bot", "outcome"]),
                "step": Histogram(
                    "postroom_step_seconds",
                    "How long each step took",
                    ["bot", "step"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                ),
                "lag": Gauge(
                    "postroom_trigger_lag_seconds",
                    "Seconds since the trigger last heard from its server",
                    ["bot", "mailbox"],
                ),
                "conflicts": Counter(
                    "postroom_claim_conflicts_total", "Claims found taken over by another worker", ["bot"]
                ),
            }
        return _metrics


def count_message(bot: str, outcome: str) -> None:
    found = _get()
    if found is not None:
        found["messages"].labels(bot, outcome).inc()


def observe_step(bot: str, step: str, seconds: float) -> None:
    found = _get()
    if found is not None:
        found["step"].labels(bot, step).observe(seconds)


def set_trigger_lag(bot: str, mailbox: str, seconds: float) -> None:
    found = _get()
    if found is not None:
        found["lag"].labels(bot, mailbox).set(seconds)


def count_claim_conflict(bot: str) -> None:
    found = _get()
    if found is not None:
        found["conflicts"].labels(bot).inc()


def serve_metrics(port: int) -> int:
    """Serve ``/metrics`` on loopback-or-all per ``POSTROOM_METRICS_HOST`` (default 127.0.0.1); the port used."""
    import os

    from prometheus_client import start_http_server

    _get()
    server, _thread = start_http_server(port, addr=os.environ.get("POSTROOM_METRICS_HOST", "127.0.0.1"))
    return int(server.server_port)
