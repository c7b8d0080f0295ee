"""Bots at scale, on real PostgreSQL, Redis and RabbitMQ: a PostgreSQL ledger shared by runners, and the
exactly-once proof with Celery workers killed, connections cut, the broker restarted and a mailbox renumbered,
on either broker."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from postroom.runner import LocalRunner, load_bot
from tests.bots import bot_file, fill_mailbox
from tests.exactly_once import run_proof
from tests.servers.dovecot import Dovecot
from tests.servers.postgres import PostgresUnderTest
from tests.servers.rabbitmq import RabbitMqUnderTest
from tests.servers.redis import RedisUnderTest
from tests.servers.smtp import SmtpServerUnderTest
from tests.test_bots import _folder_count, _mine

pytestmark = pytest.mark.usefixtures("bot_password")


def test_runners_on_a_postgres_ledger_process_each_message_once(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, postgres: PostgresUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    messages = fill_mailbox(dovecot, mailbox_user, range(1, 41))
    ledger = postgres.create_database("runners_once")
    path = bot_file(tmp_path, dovecot, users=[mailbox_user], smtp_port=smtp.ssl_port, workers=3, ledger=ledger)
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(LocalRunner(load_bot(path)).run())) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(r.outcome.done for r in reports) == 40
    assert sorted(_mine(smtp, messages).values()) == [1] * 40
    assert _folder_count(dovecot, mailbox_user, "Processed") == 40
    assert reports[0].counts["done"] == 40 or reports[1].counts["done"] == 40


@pytest.mark.timeout(300)
def test_exactly_once_with_killed_workers_cut_connections_a_redis_restart_and_a_new_uidvalidity(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, postgres: PostgresUnderTest, redis: RedisUnderTest, tmp_path: Path
) -> None:
    result = run_proof(dovecot, smtp, postgres, redis, tmp_path, mailboxes=4, per_mailbox=60, workers=4)
    print(result.table())  # the counts, for the closing note
    assert result.kills >= 3 and result.broker_restarts == 1 and result.renumbered == 1
    assert result.imap_cuts >= 1 and result.smtp_cuts >= 1
    assert result.problems() == [], result.table()
    assert result.scheduler_exit == 0


@pytest.mark.timeout(300)
def test_exactly_once_on_a_rabbitmq_broker_with_killed_workers_and_a_broker_restart(
    dovecot: Dovecot,
    smtp: SmtpServerUnderTest,
    postgres: PostgresUnderTest,
    rabbitmq: RabbitMqUnderTest,
    tmp_path: Path,
) -> None:
    result = run_proof(dovecot, smtp, postgres, rabbitmq, tmp_path, mailboxes=2, per_mailbox=40, workers=2, seed=11)
    print(result.table())
    assert result.kills >= 2 and result.broker_restarts == 1 and result.renumbered == 1
    assert result.problems() == [], result.table()
    assert result.scheduler_exit == 0
