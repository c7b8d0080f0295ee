"""The exactly-once proof at scale: ``python -m bench.exactly_once [--per-mailbox 2500]``.

The suite's proof (``tests/test_bots_scale.py``, 4 × 60 messages) at bench size: 4 Celery workers over 4
mailboxes of ``--per-mailbox`` messages each (10,000 in all by default), on a Dovecot, an SMTP server, a
PostgreSQL and a Redis (``--broker rabbitmq``: a RabbitMQ) it starts itself. A worker is killed with SIGKILL
every few seconds and started again, IMAP and SMTP connections are cut at random points, the broker is
restarted once and one mailbox is
renumbered once. Prints the fault counts and whether every message ended in Processed once, with one
reply delivered and its attachment saved once, whole.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from tests.bots import PASSWORD_ENV
from tests.exactly_once import run_proof
from tests.servers.dovecot import Dovecot
from tests.servers.postgres import postgres_server
from tests.servers.rabbitmq import rabbitmq_server
from tests.servers.redis import redis_server
from tests.servers.smtp import smtp_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-mailbox", type=int, default=2500)
    parser.add_argument("--mailboxes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--broker", choices=["redis", "rabbitmq"], default="redis")
    arguments = parser.parse_args()
    os.environ.update(PASSWORD_ENV)
    os.environ.setdefault("POSTROOM_HOME", tempfile.mkdtemp(prefix="postroom-proof-home-"))
    broker_server = rabbitmq_server if arguments.broker == "rabbitmq" else redis_server
    dovecot = Dovecot.start(extra_config="mail_max_userip_connections = 50\n")
    try:
        with (
            smtp_server(dovecot) as smtp,
            postgres_server() as postgres,
            broker_server() as broker,
            tempfile.TemporaryDirectory() as folder,
        ):
            result = run_proof(
                dovecot,
                smtp,
                postgres,
                broker,
                Path(folder),
                mailboxes=arguments.mailboxes,
                per_mailbox=arguments.per_mailbox,
                workers=arguments.workers,
                timeout=arguments.timeout,
            )
    finally:
        dovecot.stop()
    print(result.table())
    problems = result.problems()
    print("exactly once: " + ("yes" if not problems else "NO: " + "; ".join(problems)))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
