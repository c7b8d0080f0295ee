"""``postroom server``: run the service; ``create-admin``, ``create-user`` and ``create-runner`` from the shell."""

from __future__ import annotations

import getpass
import os
from typing import Any

import click

from postroom.cli.output import emit, handle_errors, json_option
from postroom.errors import ConfigError
from postroom.extras import require_extra

__all__ = ["server_group"]


def _settings(**options: Any) -> Any:
    require_extra("server", "postroom server")
    from postroom.server.settings import ServerSettings

    return ServerSettings.load(**options)


_database = click.option("--database", "database_url", help="Database URL (default: SQLite in the data folder).")
_key_file = click.option("--key-file", help="The sealing key's file (default: server.key beside the database).")


@click.group("server", invoke_without_command=True)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default 8765).")
@click.option("--public-base-url", help="The https:// address users reach it at behind a proxy (POSTROOM_SERVER_URL).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="Worker processes.")
@click.option("--ca-file", help="CA bundle for identity providers and mail servers (default: the system's).")
@_database
@_key_file
@click.pass_context
@handle_errors
def server_group(ctx: click.Context, /, workers: int, **options: Any) -> None:
    """Run postroom server: managed OAuth connections and their tokens, for runners that hold no secrets.

    With nothing configured it keeps SQLite and its key in postroom's data folder and listens on
    http://127.0.0.1:8765. Create the first administrator with `postroom server create-admin`.
    """
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings(**options)
    import uvicorn

    from postroom.server.services import Services

    Services.start(settings).close()  # migrate and make the key once, before the workers start
    for name, value in (
        ("POSTROOM_SERVER_DATABASE", settings.database_url),
        ("POSTROOM_SERVER_URL", settings.public_base_url),
        ("POSTROOM_SERVER_KEY_FILE", str(settings.key_file)),
        ("POSTROOM_SERVER_CA_FILE", settings.ca_file or ""),
    ):
        os.environ[name] = value  # what each worker process builds its settings from
    click.echo(f"postroom server on {settings.public_base_url} (database {_shown(settings.database_url)})", err=True)
    click.echo(f"OAuth callback URL to register with providers: {settings.callback_url}", err=True)
    uvicorn.run(
        "postroom.server.web.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        proxy_headers=True,
        log_level="warning",
    )


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _password(given: str | None, env: str | None) -> str:
    if env:
        found = os.environ.get(env)
        if not found:
            raise ConfigError("password", f"the environment variable {env} is not set", hint=f"export {env}=...")
        return found
    if given:
        return given
    first = getpass.getpass("Password (12 characters or more): ")
    if getpass.getpass("Again: ") != first:
        raise ConfigError("password", "the two entries differ", hint="type the same password twice")
    return first


def _create_user(name: str, password: str, roles: list[str], database_url: str | None, key_file: str | None) -> None:
    settings = _settings(database_url=database_url, key_file=key_file)
    from postroom.server.accounts import create_user
    from postroom.server.audit import Actor
    from postroom.server.services import Services

    services = Services.start(settings)
    try:
        with services.database.tx() as db:
            create_user(db, name, password, role_names=roles, actor=Actor("system", "postroom server CLI"))
    finally:
        services.close()


@server_group.command("create-admin")
@click.argument("name")
@click.option("--password-env", metavar="VAR", help="Read the password from this environment variable.")
@_database
@_key_file
@json_option
@handle_errors
def create_admin(
    name: str, password_env: str | None, database_url: str | None, key_file: str | None, as_json: bool
) -> None:
    """Create an administrator (every permission). Asks for the password unless --password-env names it."""
    _create_user(name, _password(None, password_env), ["Administrator"], database_url, key_file)
    emit(as_json, {"ok": True, "user": name.lower(), "roles": ["Administrator"]}, lambda: click.echo(f"created {name}"))


@server_group.command("create-user")
@click.argument("name")
@click.option("--role", "roles", multiple=True, required=True, help="A role to give (repeat for several).")
@click.option("--password-env", metavar="VAR", help="Read the password from this environment variable.")
@_database
@_key_file
@json_option
@handle_errors
def create_user_command(
    name: str,
    roles: tuple[str, ...],
    password_env: str | None,
    database_url: str | None,
    key_file: str | None,
    as_json: bool,
) -> None:
    """Create a user with the roles given (e.g. --role "Bot user")."""
    _create_user(name, _password(None, password_env), list(roles), database_url, key_file)
    emit(as_json, {"ok": True, "user": name.lower(), "roles": list(roles)}, lambda: click.echo(f"created {name}"))


@server_group.command("create-runner")
@click.argument("name")
@click.option("--role", "roles", multiple=True, default=["Bot runner"], show_default=True, help="Its roles.")
@_database
@_key_file
@json_option
@handle_errors
def create_runner_command(
    name: str, roles: tuple[str, ...], database_url: str | None, key_file: str | None, as_json: bool
) -> None:
    """Register a runner and print its key, once (the server keeps only its hash)."""
    settings = _settings(database_url=database_url, key_file=key_file)
    from postroom.server.accounts import role_id
    from postroom.server.audit import Actor
    from postroom.server.runners import create_runner
    from postroom.server.services import Services

    services = Services.start(settings)
    try:
        with services.database.tx() as db:
            ids = [role_id(db, r) for r in roles]
            key = create_runner(db, name, role_ids=ids, actor=Actor("system", "postroom server CLI"))
    finally:
        services.close()
    emit(as_json, {"ok": True, "runner": name, "key": key.reveal()}, lambda: click.echo(key.reveal()))
