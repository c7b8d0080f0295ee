"""``postroom vault``: the local credential vault."""

from __future__ import annotations

import sys

import click

from postroom.cli.output import emit, handle_errors, json_option
from postroom.credentials import CredentialVault

__all__ = ["vault_group"]


@click.group("vault")
def vault_group() -> None:
    """Store credentials encrypted on this machine (never printed unless asked)."""


@vault_group.command("set")
@click.argument("name")
@click.argument("attribute")
@json_option
@handle_errors
def vault_set(name: str, attribute: str, as_json: bool) -> None:
    """Store a value as NAME/ATTRIBUTE, read from a hidden prompt or from stdin."""
    if sys.stdin.isatty():
        value = click.prompt(f"{name}/{attribute}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
    vault = CredentialVault.default()
    vault.set(name, attribute, value)
    ref = f"vault:{name}/{attribute}"
    emit(as_json, {"ok": True, "stored": ref, "key": vault.key_location()}, lambda: click.echo(f"stored {ref}"))


@vault_group.command("list")
@json_option
@handle_errors
def vault_list(as_json: bool) -> None:
    """List credential names and attributes (never values)."""
    entries = CredentialVault.default().list()

    def human() -> None:
        if not entries:
            click.echo("the vault is empty")
        for name, attributes in entries.items():
            click.echo(f"{name}: {', '.join(attributes)}")

    emit(as_json, {"credentials": entries}, human)


@vault_group.command("get")
@click.argument("name")
@click.argument("attribute")
@click.option("--reveal", is_flag=True, help="Print the value itself (required: values are never shown by default).")
@json_option
@handle_errors
def vault_get(name: str, attribute: str, reveal: bool, as_json: bool) -> None:
    """Show that NAME/ATTRIBUTE exists; with --reveal, print its value."""
    secret = CredentialVault.default().get(name, attribute)
    value = secret.reveal() if reveal else "***"
    emit(as_json, {"name": name, "attribute": attribute, "value": value}, lambda: click.echo(value))


@vault_group.command("delete")
@click.argument("name")
@click.argument("attribute", required=False)
@json_option
@handle_errors
def vault_delete(name: str, attribute: str | None, as_json: bool) -> None:
    """Delete one attribute, or the whole credential NAME."""
    CredentialVault.default().delete(name, attribute)
    what = f"{name}/{attribute}" if attribute else name
    emit(as_json, {"ok": True, "deleted": what}, lambda: click.echo(f"deleted vault:{what}"))
