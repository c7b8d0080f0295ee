"""What an administrator, a user and a runner do with postroom server, as steps the server tests share."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

import postroom
from postroom import EmailServer, Managed, Variable
from tests.servers.dovecot import Dovecot
from tests.servers.oauth import SERVER_CLIENT, SERVER_SECRET, TENANT, AuthorizationServerUnderTest
from tests.servers.postroom_server import ServerUnderTest
from tests.web import WebUser

__all__ = [
    "ADMIN",
    "ADMIN_PASSWORD",
    "Team",
    "create_connection",
    "managed_imap",
    "role_ids",
    "runner_key",
    "token_for",
]

ADMIN = "alice"
#: The web users' password: a canary, like the client secret and the refresh tokens.
ADMIN_PASSWORD = "canary-WebPassword-71c4e9"


def role_ids(page_html: str, *names: str, field: str = "roles") -> list[str]:
    """The values of the role check boxes (named ``field``) labelled ``names`` on a page."""
    found = dict(
        (label.strip(), value)
        for value, label in re.findall(rf'name="{field}" value="(\d+)"[^>]*> ([^<]+)<', page_html)
    )
    return [found[name] for name in names]


def create_connection(
    admin: WebUser,
    oauth: AuthorizationServerUnderTest,
    *,
    name: str = "contoso-mail",
    token_type: str = "shared",
    provider: str = "microsoft365",
    roles: tuple[str, ...] = ("Bot runner",),
    protocols: tuple[str, ...] = ("imap", "smtp"),
    scopes: str = "",
) -> requests.Response:
    form: dict[str, str | list[str]] = {
        "name": name,
        "provider": provider,
        "grant": "authorization_code",
        "token_type": token_type,
        "client_id": SERVER_CLIENT,
        "client_secret": SERVER_SECRET,
        "protocols": list(protocols),
        "roles": role_ids(admin.get("/connections/new").text, *roles),
        "scopes": scopes,
    }
    if provider == "microsoft365":
        form |= {"tenant": TENANT, "authority": oauth.authority}
    else:  # the test server plays Google at its own URLs
        form |= {"authorize_url": oauth.authorize_url, "token_url": oauth.token_url}
    reply = admin.post("/connections/new", form)
    assert reply.ok, reply.text
    return reply


def runner_key(server: ServerUnderTest, name: str = "runner-1", *roles: str) -> str:
    extra = [a for r in roles for a in ("--role", r)]
    done = server.cli("create-runner", name, *extra, "--json")
    key: str = json.loads(done.stdout)["key"]
    return key


def token_for(server: ServerUnderTest, key: str, connection: str, **body: Any) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/connections/{connection}/token",
        json={"run_id": "run-1", **body},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def managed_imap(
    dovecot: Dovecot, server: ServerUnderTest, key: str, connection: str = "contoso-mail", **options: object
) -> postroom.Session:
    assert dovecot.certs is not None
    config = EmailServer(
        host="localhost",
        port=dovecot.ports["imaps"],
        security="ssl",
        ca_file=dovecot.certs.ca_file,
        connect_timeout=5,
        read_timeout=10,
        auth=Managed(connection, server=server.url, runner_key=Variable("RUNNER_KEY"), **options),  # type: ignore[arg-type]
    )
    return postroom.connect(f"managed-{id(config)}", config, variables={"RUNNER_KEY": key})


@dataclass
class Team:
    """A server with an administrator signed in to its UI."""

    server: ServerUnderTest
    admin: WebUser
    home: Path

    @classmethod
    def start(cls, server: ServerUnderTest) -> Team:
        server.start()
        server.cli("create-admin", ADMIN, "--password-env", "ADMIN_PW", env={"ADMIN_PW": ADMIN_PASSWORD})
        admin = WebUser(server.url)
        admin.sign_in(ADMIN, ADMIN_PASSWORD)
        return cls(server, admin, server.home)

    def add_user(self, name: str, *roles: str) -> WebUser:
        args = [a for r in roles for a in ("--role", r)]
        self.server.cli("create-user", name, *args, "--password-env", "PW", env={"PW": ADMIN_PASSWORD})
        user = WebUser(self.server.url)
        user.sign_in(name, ADMIN_PASSWORD)
        return user
