"""The shared credential vault of a ``postroom server``: ``Vault("locker/credential", "attribute")``.

When a runtime has a shared vault (``Runtime(shared_vault=SharedVault(...))``, or ``POSTROOM_SERVER_URL``
and ``POSTROOM_RUNNER_KEY`` in the environment), a vault reference whose name holds a ``/`` is read from
the server's locker at run time — only by a runner in one of the locker's consumer roles — and kept in
memory only. Every other reference reads the local vault.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from postroom.credentials.secret import Secret
from postroom.credentials.server_api import ask_server, checked_server_url
from postroom.errors import CredentialError

__all__ = ["SharedVault"]


@dataclass(frozen=True)
class SharedVault:
    server: str
    runner_key: Secret = field(repr=False)
    #: The user the run belongs to (for user-provided attributes).
    user: str | None = None
    run_id: str = field(default_factory=lambda: os.environ.get("POSTROOM_RUN_ID") or f"run-{uuid.uuid4().hex[:12]}")
    ca_file: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", checked_server_url(self.server))

    @classmethod
    def from_environment(cls) -> SharedVault | None:
        """The shared vault ``POSTROOM_SERVER_URL`` and ``POSTROOM_RUNNER_KEY`` name (None without both)."""
        server, key = os.environ.get("POSTROOM_SERVER_URL"), os.environ.get("POSTROOM_RUNNER_KEY")
        if not server or not key:
            return None
        return cls(
            server,
            Secret(key),
            user=os.environ.get("POSTROOM_RUN_USER") or None,
            ca_file=os.environ.get("POSTROOM_SERVER_CA_FILE") or None,
        )

    def get(self, name: str, attribute: str, *, field_name: str) -> Secret:
        locker, _, credential = name.partition("/")
        path = "/api/v1/lockers/{}/credentials/{}/{}".format(
            *(quote(p, safe="") for p in (locker, credential, attribute))
        )
        body = {"run_id": self.run_id, **({"user": self.user} if self.user else {})}
        status, answer = ask_server(self.server, self.runner_key, path, body, ca_file=self.ca_file)
        if status != 200:
            problem = str(answer.get("error") or f"HTTP {status}")
            raise CredentialError(
                f"{field_name}: the postroom server refused vault:{name}/{attribute}: {problem}",
                hint=str(answer.get("hint") or "") or "check the locker's consumers and the runner's roles",
            )
        return Secret(str(answer["value"]))
