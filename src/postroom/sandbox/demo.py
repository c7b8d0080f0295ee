"""The bot behind ``postroom demo``: a real session against the embedded sandbox server."""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import postroom
from postroom import Basic, EmailServer, Variable
from postroom.sandbox.seed import sample_mailbox
from postroom.sandbox.server import SandboxServer

__all__ = ["run_demo"]

DEMO_USER = "bot@sandbox.postroom.test"


def run_demo(say: Callable[[str], None], workdir: Path | None = None) -> dict[str, Any]:
    """Start the sandbox, seed it, and run the bot. ``say`` receives one line per step."""
    folder = Path(workdir or tempfile.mkdtemp(prefix="postroom-demo-"))
    password = secrets.token_urlsafe(16)  # a fresh secret per run, handed over as a bot variable
    variables = {"SANDBOX_USER": DEMO_USER, "SANDBOX_PASSWORD": password}
    summary: dict[str, Any] = {"workdir": str(folder)}
    with SandboxServer(folder, user=DEMO_USER, password=password) as server:
        say(f"started an embedded IMAP server on {server.host}:{server.imap_port} (STARTTLS, CA {server.ca_file})")
        mail = sample_mailbox(DEMO_USER)
        server.deliver(mail)
        say(f"delivered {len(mail)} sample messages to {DEMO_USER}")
        config = EmailServer(
            host=server.host,
            port=server.imap_port,
            security="starttls",
            ca_file=server.ca_file,
            auth=Basic(username=Variable("SANDBOX_USER"), password=Variable("SANDBOX_PASSWORD")),
        )
        tested = postroom.test_connection(config, name="sandbox", variables=variables)
        report = tested.report
        say(
            f"test connection: {report.address} {report.tls_version} {report.cipher}, "
            f"{report.folder_count} folder(s), login in {tested.connect_ms:.1f} ms, "
            f"round trip {tested.round_trip_ms:.2f} ms"
        )
        summary["test_connection"] = tested.to_dict()
        with postroom.connect("sandbox", config, variables=variables) as session:
            say(f"connected session {session.name!r} to {session.server}")
            session.call(lambda mailbox: mailbox.noop())
        say("disconnected session 'sandbox'")
        summary["delivered"] = len(mail)
    say("stopped the embedded server")
    return summary
