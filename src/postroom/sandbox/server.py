"""An embedded mail server on loopback for ``postroom demo``: pymap (IMAP) and aiosmtpd (SMTP).

No root, no system packages: both run in background threads of this process,
with STARTTLS, AUTH and a certificate made for the run, so the demo connects and
verifies TLS exactly as a bot does against a real server. Mail sent to the
sandbox user lands in its INBOX; mail to anyone else is kept in :attr:`outbox`.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import logging
import os
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from postroom.errors import PostroomError
from postroom.sandbox.certs import CertificateSet, make_certificates
from postroom.transports.imap.syntax import quote
from postroom.transports.tls import client_context

__all__ = ["SandboxServer"]


class SandboxServer:
    """An IMAP and SMTP server for one user. Use as a context manager.

    The mailbox is in memory, or with ``store`` a Maildir in that folder that outlives the process (the bot
    runner's embedded server: a re-run finds the mail as the last run left it). Mail sent to anyone but the
    user is kept in :attr:`outbox`, and with ``store`` also written to ``store/delivered/`` (the recipients'
    side, where a test or a person counts what was sent) and, as Gmail's and Microsoft 365's servers do,
    filed in the user's Sent folder.
    """

    def __init__(self, folder: Path, *, user: str, password: str, store: Path | None = None) -> None:
        self.folder = folder
        self.store = store
        self.user = user
        self._password = password
        self.host = "localhost"
        self.imap_port = 0
        self.smtp_port = 0
        #: Messages sent to anyone but the sandbox user: (sender, recipients, raw bytes).
        self.outbox: list[tuple[str, list[str], bytes]] = []
        self._smtp: Any = None
        self.certs: CertificateSet | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._delivering = threading.Lock()

    def config(self) -> Any:
        """Connect settings for this server (STARTTLS, its CA), the login from the variables
        ``SANDBOX_USER`` and ``SANDBOX_PASSWORD`` (see :meth:`variables`)."""
        from postroom.auth import Basic
        from postroom.config import EmailServer
        from postroom.credentials import Variable

        return EmailServer(
            host=self.host,
            port=self.imap_port,
            security="starttls",
            ca_file=self.ca_file,
            smtp_host=self.host,
            smtp_port=self.smtp_port,
            smtp_security="starttls",
            auth=Basic(username=Variable("SANDBOX_USER"), password=Variable("SANDBOX_PASSWORD")),
        )

    def variables(self) -> dict[str, str]:
        """The variables :meth:`config`'s login reads."""
        return {"SANDBOX_USER": self.user, "SANDBOX_PASSWORD": self._password}

    @property
    def ca_file(self) -> Path:
        assert self.certs is not None
        return self.certs.ca_file

    def start(self) -> SandboxServer:
        try:
            from pymap.backend.dict import DictBackend  # noqa: F401 - checked here for a clear error
        except ImportError:
            raise PostroomError(
                "the demo needs the embedded mail server, which is not installed",
                hint="pip install 'postroom[demo]'",
            ) from None
        self.certs = make_certificates(self.folder / "tls", ("localhost", "127.0.0.1"))
        self._thread = threading.Thread(target=self._run, name="postroom-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=20):
            raise PostroomError("the embedded mail server did not start within 20 s")
        if self._error is not None:
            raise PostroomError(f"the embedded mail server failed to start: {self._error}") from self._error
        self._start_smtp()
        if self.store is not None:
            self._recover_sent_copies()
        return self

    def _recover_sent_copies(self) -> None:
        """What a real server does with its queue after a crash: every message it accepted (``delivered/``)
        has its copy in Sent, also one accepted just before the process was killed."""
        import email

        delivered = self.delivered()
        if not delivered:
            return
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            client.starttls(client_context(ca_file=self.ca_file))
            client.login(self.user, self._password)
            filed: set[str] = set()
            if client.select(quote("Sent"), readonly=True)[0] == "OK":
                _typ, data = client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                for part in data:
                    if isinstance(part, tuple):
                        filed.add(str(email.message_from_bytes(part[1]).get("Message-ID", "")).strip())
        finally:
            client.logout()
        missing = [
            raw for raw in delivered if str(email.message_from_bytes(raw).get("Message-ID", "")).strip() not in filed
        ]
        if missing:
            self.deliver([("Sent", raw, True) for raw in missing])

    def _start_smtp(self) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        assert self.certs is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certs.cert_file, self.certs.key_file)
        sandbox = self

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
            ok = isinstance(data, LoginPassword) and (data.login.decode(), data.password.decode()) == (
                sandbox.user,
                sandbox._password,
            )
            return AuthResult(success=ok, handled=False)

        class Deliver:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                raw = envelope.original_content
                local = [r for r in envelope.rcpt_tos if r.lower() == sandbox.user.lower()]
                others = [r for r in envelope.rcpt_tos if r.lower() != sandbox.user.lower()]
                if others:
                    sandbox.outbox.append((envelope.mail_from, others, raw))

                def accept() -> None:  # one job: a client that hangs up cannot stop it halfway
                    if others:
                        sandbox._keep_delivered(raw)
                    copies = [("INBOX", raw, False)] if local else []
                    if sandbox.store is not None:  # like Gmail and Microsoft 365: a copy of what was sent in Sent
                        copies.append(("Sent", raw, True))
                    if copies:
                        sandbox.deliver(copies)

                await asyncio.get_running_loop().run_in_executor(None, accept)
                return "250 2.0.0 accepted"

        logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd logs its own deprecations on every AUTH
        self._smtp = Controller(
            Deliver(),
            hostname="127.0.0.1",
            port=_free_port(),  # aiosmtpd cannot listen on port 0
            server_hostname="localhost",
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticate,
        )
        self._smtp.start()
        self.smtp_port = self._smtp.port

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    def _keep_delivered(self, raw: bytes) -> None:
        if self.store is None:
            return
        folder = self.store / "delivered"
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(len(list(folder.iterdir())) + 1, 10**9):
            try:
                with (folder / f"{number:06d}.eml").open("xb") as handle:
                    handle.write(raw)
                    handle.flush()
                    os.fsync(handle.fileno())
                return
            except FileExistsError:
                continue

    def delivered(self) -> list[bytes]:
        """Every message the server sent on to others (``store`` only: across runs)."""
        folder = (self.store or self.folder) / "delivered"
        return [path.read_bytes() for path in sorted(folder.glob("*.eml"))] if folder.is_dir() else []

    async def _backend(self, args: argparse.Namespace) -> tuple[Any, Any]:
        if self.store is None:
            from pymap.backend.dict import DictBackend

            return await DictBackend.init(args)
        from pymap.backend.maildir import MaildirBackend
        from pysasl.hashing import BuiltinHash

        base = self.store / "imap"
        for sub in ("cur", "new", "tmp"):
            (base / "mail" / sub).mkdir(parents=True, exist_ok=True)
        (base / "pymap-etc-passwd").write_text(f"{self.user}:::::mail:\n", encoding="utf-8")
        (base / "pymap-etc-shadow").write_text(
            f"{self.user}:{BuiltinHash().hash(self._password)}:::::::\n", encoding="utf-8"
        )
        (base / "pymap-etc-shadow").chmod(0o600)
        args.base_dir, args.concurrency, args.layout, args.colon = str(base), None, "++", None
        return await MaildirBackend.init(args)

    async def _serve(self) -> None:
        from proxyprotocol.reader import ProxyProtocolReader
        from pymap.imap import IMAPServer

        assert self.certs is not None
        args = argparse.Namespace(
            host=["127.0.0.1"],
            port="0",
            cert=str(self.certs.cert_file),
            key=str(self.certs.key_file),
            tls=True,
            inherited_sockets=None,
            proxy_protocol=None,
            debug=False,
            passlib_cfg=None,
            demo_data=False,
            demo_user=self.user,
            demo_password=self._password,
            skip_services=[],
        )
        backend, config = await self._backend(args)
        config.apply_context()
        callback = ProxyProtocolReader(config.proxy_protocol).get_callback(IMAPServer(backend.login, config))
        server = await asyncio.start_server(callback, host="127.0.0.1", port=0)
        self.imap_port = server.sockets[0].getsockname()[1]
        self._loop = asyncio.get_running_loop()
        # a client that drops mid-command leaves pymap a failed task: that is the client's business, not the log's
        self._loop.set_exception_handler(
            lambda _loop, context: logging.getLogger("postroom.sandbox").debug("%s", context)
        )
        self._stop = asyncio.Event()
        self._ready.set()
        async with server:
            await self._stop.wait()

    def deliver(self, messages: list[tuple[str, bytes, bool]]) -> None:
        """Put ``(folder, raw message, seen)`` into the mailbox, as a mail server's delivery would."""
        with self._delivering:  # one at a time: two CREATEs of one new folder would race
            self._deliver(messages)

    def _deliver(self, messages: list[tuple[str, bytes, bool]]) -> None:
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        try:
            client.starttls(client_context(ca_file=self.ca_file))
            client.login(self.user, self._password)
            existing = {_listed_name(line) for line in client.list()[1] if isinstance(line, bytes)}
            for folder, raw, seen in messages:
                if folder not in existing:
                    client.create(quote(folder))
                    existing.add(folder)
                client.append(quote(folder), "(\\Seen)" if seen else None, None, raw)
        finally:
            client.logout()

    def stop(self) -> None:
        if self._smtp is not None:
            self._smtp.stop()
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _listed_name(line: bytes) -> str:
    """The folder name of a LIST line, quoted (``... "/" "Sent Items"``) or not (``... "/" Sent``)."""
    text = line.decode("utf-8", "replace").rstrip()
    if text.endswith('"'):
        return text[:-1].rpartition('"')[2]
    return text.rpartition(" ")[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
