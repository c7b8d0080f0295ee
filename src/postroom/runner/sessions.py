"""The mailboxes a bot works on: each session spec made into a config (a profile, inline settings, or the
embedded sandbox server), and a stable identity for the ledger."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from postroom.config.base import ServerConfig
from postroom.errors import ConfigError
from postroom.logs import get_logger
from postroom.runner.definition import BotDefinition, SessionSpec
from postroom.session import Runtime, Session

__all__ = ["SANDBOX_USER", "BotMailbox", "BotSessions"]

_log = get_logger("postroom.runner")

SANDBOX_USER = "bot@sandbox.postroom.test"


@dataclass(frozen=True)
class BotMailbox:
    """One mailbox (and folder) of a bot, as the ledger knows it."""

    spec: SessionSpec
    config: ServerConfig
    #: Stable across runs and hosts: protocol, login and server (``imap://bot@imap.example.com:993``).
    identity: str
    folder: str
    variables: Mapping[str, str]


class BotSessions:
    """Builds each mailbox's config once per process; starts the embedded sandbox when a bot asks for it."""

    def __init__(self, definition: BotDefinition, *, variables: Mapping[str, str] | None = None) -> None:
        self.definition = definition
        self.variables = dict(variables or {})
        self._sandbox: Any = None
        self._lock = threading.Lock()
        self._mailboxes: list[BotMailbox] | None = None

    def mailboxes(self) -> list[BotMailbox]:
        with self._lock:
            if self._mailboxes is None:
                self._mailboxes = [self._mailbox(spec) for spec in self.definition.sessions]
            return self._mailboxes

    def _mailbox(self, spec: SessionSpec) -> BotMailbox:
        variables = dict(self.variables)
        if spec.embedded:
            config, extra = self._embedded()
            variables.update(extra)
            identity = f"sandbox://{SANDBOX_USER}"
        else:
            config = self._config(spec)
            identity = _identity(config, self._login_name(config, variables))
        folder = "/".join(part for part in self.definition.loop.folder.split("/") if part) or "INBOX"
        return BotMailbox(spec, config, identity, folder, variables)

    def _config(self, spec: SessionSpec) -> ServerConfig:
        from postroom.auth import auth_from_profile
        from postroom.profiles import ProfileStore
        from postroom.transports.registry import backend

        if spec.config is not None:
            return cast(ServerConfig, spec.config)
        if spec.profile is not None:
            return ProfileStore().load(spec.profile)
        assert spec.settings is not None
        settings = {k: v for k, v in spec.settings.items() if k != "auth"}
        return backend(str(settings["protocol"])).from_profile(settings, auth_from_profile(dict(spec.settings["auth"])))

    def _login_name(self, config: ServerConfig, variables: Mapping[str, str]) -> str:
        runtime = Runtime(name="identity", variables=variables)
        try:
            login = config.auth.resolve(runtime.context_for("identity"))
        except Exception:  # the identity needs only the user name; a missing secret is reported on connect
            return "?"
        return login.username.reveal() if login.username is not None else "?"

    def _embedded(self) -> tuple[ServerConfig, dict[str, str]]:
        from postroom.paths import data_dir, write_private_file

        if self._sandbox is None:
            try:
                from postroom.sandbox.seed import sample_mailbox
                from postroom.sandbox.server import SandboxServer
            except ImportError:
                raise ConfigError(
                    "session.embedded", "the embedded server is not installed", hint="pip install 'postroom[demo]'"
                ) from None
            store = data_dir() / "sandbox"
            store.mkdir(parents=True, exist_ok=True)
            secret_file = store / "password"
            if not secret_file.exists():
                write_private_file(secret_file, secrets.token_urlsafe(16).encode())
            password = secret_file.read_text().strip()
            fresh = not (store / "imap").exists()
            server = SandboxServer(store / "run", user=SANDBOX_USER, password=password, store=store)
            server.start()
            if fresh:
                server.deliver(sample_mailbox(SANDBOX_USER))
                _log.warning("the embedded mail server was set up in %s with sample invoices", store)
            self._sandbox = (server, password)
        server = self._sandbox[0]
        return server.config(), server.variables()

    def connect(self, runtime: Runtime, box: BotMailbox, name: str) -> Session:
        return runtime.connect(name, box.config, variables=box.variables, replace=True)

    def close(self) -> None:
        if self._sandbox is not None:
            self._sandbox[0].stop()
            self._sandbox = None


def _identity(config: ServerConfig, user: str) -> str:
    mailbox = getattr(config, "mailbox", None)
    shared = f"/{mailbox}" if isinstance(mailbox, str) and mailbox and mailbox != "me" else ""
    return f"{config.protocol}://{user}@{config.address}{shared}"
