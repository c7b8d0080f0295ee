"""A loop and moves through a connection that keeps being cut: ``python -m bench.cuts [--count 10000]``.

Starts its own Dovecot, fills one mailbox with the bench's mix (:mod:`bench.mailbox`), then:

1. loops over every message through the suite's cutting proxy (a cut every 200-800 KB of
   server data), reading each body: yielded, duplicates, reconnects;
2. moves a third of them one by one through a proxy that cuts every 20-80 KB, and cuts
   every seventh UID MOVE after the server ran it: results by status, checked against
   what the server holds on an uncut connection.

Not part of the suite (it takes minutes); the suite runs the same at 1,500 messages.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

from tests.servers.cutting_proxy import CutRule, cutting_proxy
from tests.servers.dovecot import SHARED_PASSWORD, Dovecot

import postroom
from bench.mailbox import generate
from postroom import Basic, EmailServer, ReconnectPolicy, Variable

USER = "cuts@example.test"


def _config(dovecot: Dovecot, port: int) -> EmailServer:
    assert dovecot.certs is not None
    return EmailServer(
        host="localhost",
        port=port,
        security="ssl",
        ca_file=dovecot.certs.ca_file,
        auth=Basic(username=Variable("U"), password=Variable("P")),
        read_timeout=10,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    options = parser.parse_args()
    variables = {"U": USER, "P": SHARED_PASSWORD}
    policy = ReconnectPolicy(attempts=5, backoff=0.05, max_backoff=1)
    dovecot = Dovecot.start()
    try:
        assert dovecot.certs is not None
        certs = dovecot.certs
        dovecot.add_user(USER)
        dovecot.deliver_many(USER, generate(options.count, seed=11))
        direct = postroom.connect("direct", _config(dovecot, dovecot.ports["imaps"]), variables=variables)
        postroom.create_folder(direct, "Done")
        report: dict[str, object] = {"messages": options.count}

        with cutting_proxy(
            dovecot.ports["imaps"], certs.cert_file, certs.key_file, certs.ca_file, every=(200_000, 800_000)
        ) as proxy:
            session = postroom.connect("loop", _config(dovecot, proxy.port), variables=variables, reconnect=policy)
            started = time.perf_counter()
            keys = []
            for message in postroom.messages(session, order="oldest"):
                message.text  # noqa: B018 - the bodies come through the cuts too
                keys.append(str(message.key))
            report["loop"] = {
                "yielded": len(keys),
                "duplicates": len(keys) - len(set(keys)),
                "cuts": proxy.cuts,
                "reconnects": session.reconnects,
                "wall_s": round(time.perf_counter() - started, 1),
            }
            session.close()

        chosen = list(postroom.messages(direct, order="oldest", limit=options.count // 3))
        rule = CutRule(rb"UID MOVE", "after", times=len(chosen), spacing=7)
        with cutting_proxy(
            dovecot.ports["imaps"], certs.cert_file, certs.key_file, certs.ca_file, every=(20_000, 80_000), rules=[rule]
        ) as proxy:
            session = postroom.connect("moves", _config(dovecot, proxy.port), variables=variables, reconnect=policy)
            started = time.perf_counter()
            statuses: collections.Counter[str] = collections.Counter()
            for message in chosen:
                statuses.update(result.status for result in postroom.move(session, message.key, "Done"))
            report["moves"] = {
                "moved": len(chosen),
                "results": dict(statuses),
                "in_done_on_the_server": len(list(postroom.messages(direct, "Done"))),
                "left_in_inbox": len(list(postroom.messages(direct))),
                "cuts": proxy.cuts,
                "reconnects": session.reconnects,
                "wall_s": round(time.perf_counter() - started, 1),
            }
            session.close()
        print(json.dumps(report, indent=2))
    finally:
        postroom.disconnect_all()
        dovecot.stop()


if __name__ == "__main__":
    main()
