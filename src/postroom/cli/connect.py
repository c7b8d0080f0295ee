"""``postroom connect``, ``postroom test-connection`` and ``postroom profiles``."""

from __future__ import annotations

from typing import Any

import click

from postroom.actions import ConnectionTest, test_connection
from postroom.auth import (
    AuthMode,
    Basic,
    Managed,
    Ntlm,
    OAuth2ClientCredentials,
    OAuth2Implicit,
    OAuth2PKCE,
    OAuth2ROPC,
)
from postroom.auth.oauth import DEFAULT_REDIRECT_URI
from postroom.auth.oauth.modes import BrowserSignIn
from postroom.cli.common import profile_name
from postroom.cli.output import emit, handle_errors, json_option, state
from postroom.cli.settings import RegistryCommand, settings_from_options
from postroom.credentials import CredentialVault, Insecure, ResolveContext, SecretRef, Vault, redact
from postroom.credentials.refs import parse_ref
from postroom.errors import ConfigError
from postroom.profiles import ProfileStore
from postroom.transports.registry import Backend, backend, backends

__all__ = ["connect_command", "profiles_group", "test_connection_command"]

PROFILE_VAULT_PREFIX = "profile:"


@click.command("connect", cls=RegistryCommand)
@click.argument("name")
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(
        ["basic", "ntlm", "oauth2-pkce", "oauth2-client-credentials", "oauth2-ropc", "oauth2-implicit", "managed"]
    ),
    default="basic",
    show_default=True,
    help="Basic (password), NTLM (EWS), OAuth2 authorization code with PKCE (a user signs in once), "
    "client credentials (app-only), the legacy ROPC (password) and implicit grants, or managed: tokens "
    "from a postroom server's connection (--managed-connection, --postroom-server, --runner-key).",
)
@click.option("--username", "username_ref", metavar="REF", help="vault:N/A, var:N, env:N or a value (the mailbox).")
@click.option(
    "--password", "password_ref", metavar="REF", help="Basic, NTLM, ROPC. vault:N/A, var:N, env:N or a value."
)
@click.option(
    "--oauth-provider",
    type=click.Choice(["microsoft365", "gmail", "custom"]),
    help="OAuth2 provider (default: from --provider; custom needs --authorize-url, --token-url, --scope).",
)
@click.option("--client-id", "client_id_ref", metavar="REF", help="OAuth2 application (client) ID.")
@click.option("--tenant-id", "tenant_id_ref", metavar="REF", help="Microsoft 365 directory (tenant) ID.")
@click.option("--client-secret", "client_secret_ref", metavar="REF", help="OAuth2 client secret.")
@click.option("--redirect-uri", default=DEFAULT_REDIRECT_URI, show_default=True, help="PKCE loopback redirect URI.")
@click.option(
    "--scope", "scopes", multiple=True, help="OAuth2 scope (repeatable; default: the provider's mail scopes)."
)
@click.option("--authority", help="Microsoft authority URL override (ADFS, or a test authority).")
@click.option("--authorize-url", help="Custom provider: authorization endpoint.")
@click.option("--token-url", help="Custom provider: token endpoint.")
@click.option(
    "--client-auth",
    type=click.Choice(["basic", "body"]),
    help="How the client secret goes to the token endpoint: HTTP Basic (default for custom) or body (Google).",
)
@click.option(
    "--oauth-ca-file",
    type=click.Path(dir_okay=False, exists=True),
    help="PEM file of the authorization server's CA, or with --auth managed the postroom server's "
    "(default: the system's).",
)
@click.option("--managed-connection", metavar="NAME", help="--auth managed: the connection's name on the server.")
@click.option(
    "--managed-token",
    type=click.Choice(["shared", "user"]),
    help="--auth managed: the connection's shared token (default), or the user's (--managed-user).",
)
@click.option("--managed-user", metavar="USER", help="--auth managed: the postroom server user the run belongs to.")
@click.option(
    "--postroom-server", metavar="URL", help="--auth managed: the server's address (default: POSTROOM_SERVER_URL)."
)
@click.option(
    "--runner-key",
    "runner_key_ref",
    metavar="REF",
    help="--auth managed: the runner's key (default: var:POSTROOM_RUNNER_KEY). vault:N/A, var:N, env:N or a value.",
)
@click.option("--test", "run_test", is_flag=True, help="Also run Test connection.")
@json_option
@handle_errors
def connect_command(name: str, run_test: bool, as_json: bool, **options: Any) -> None:
    """Save connection profile NAME (secrets by reference only) for later --session NAME.

    A bare value for --password or --client-secret is an insecure string: it is
    moved into the credential vault as vault:profile:NAME/FIELD, never written to
    the profile in clear. A bare --username, --client-id or --tenant-id is an
    identifier, not a secret: the profile keeps it as given. With --auth
    oauth2-pkce or oauth2-implicit, sign in afterwards with `postroom auth login NAME`.
    """
    entry = backend(options.pop("protocol"))
    settings = settings_from_options(entry, options)  # takes the server's settings out of ``options``
    writes = _VaultWrites()
    try:  # all or nothing: a bad setting or a failed --test leaves no profile and no vault entry behind
        auth = _auth_from_options(name, entry, {**options, "server_provider": settings.get("provider")}, writes)
        config = entry.from_profile({"protocol": entry.protocol, **settings}, auth)
        tested: ConnectionTest | None = None
        if run_test:
            tested = test_connection(config, name=name, variables=state().variables)
        record = ProfileStore().save(name, config)
    except BaseException:
        writes.undo()
        raise
    result: dict[str, Any] = {"ok": True, "profile": name, "address": config.address, **record}
    if tested is not None:
        result["test"] = tested.to_dict()

    def human() -> None:
        click.echo(
            f"saved profile {name!r}: {config.address} ({', '.join(f'{k} {v}' for k, v in record['auth'].items())})"
        )
        if tested is not None:
            _print_test(tested)
        elif isinstance(auth, BrowserSignIn):
            click.echo(f"sign in with: postroom auth login {name}")
        else:
            click.echo(f"check it with: postroom test-connection {name}")

    emit(as_json, result, human)


_OAUTH_OPTIONS = (
    "oauth_provider",
    "redirect_uri",
    "scopes",
    "mailbox",
    "authority",
    "authorize_url",
    "token_url",
    "client_auth",
)


def _auth_from_options(name: str, entry: Backend, options: dict[str, Any], writes: _VaultWrites) -> AuthMode:
    """The auth mode the options describe; secrets typed in go to the vault."""
    mode = options.pop("auth_mode")
    if not entry.accepts(mode):
        others = [b.protocol for b in backends() if b.accepts(mode)]
        raise ConfigError(
            "auth",
            f"{mode} is not a way to log in to {entry.label}",
            hint=f"use it with --protocol {' or '.join(others)}" if others else "choose another --auth",
        )
    refs = {
        field_name: options.pop(f"{field_name}_ref")
        for field_name in ("username", "password", "client_id", "tenant_id", "client_secret", "runner_key")
    }
    oauth = {key: options.pop(key, None) for key in _OAUTH_OPTIONS}
    oauth_ca_file = options.pop("oauth_ca_file")
    managed = {key: options.pop(key, None) for key in _MANAGED_OPTIONS}
    given = {k: _stored_ref(name, k, parse_ref(v, k), writes) for k, v in refs.items() if v is not None}
    if mode == "managed":
        return _managed(managed, given, oauth_ca_file)
    for option, value in [*managed.items(), ("runner_key", given.get("runner_key"))]:
        if value is not None:
            raise ConfigError(
                option, "is only used with --auth managed", hint=f"leave --{option.replace('_', '-')} out"
            )
    if mode in ("basic", "ntlm"):
        for field_name in ("username", "password"):
            if field_name not in given:
                raise ConfigError(field_name, f"is required with --auth {mode}", hint=f"give --{field_name} REF")
        return (Ntlm if mode == "ntlm" else Basic)(username=given["username"], password=given["password"])
    if "password" in given and mode != "oauth2-ropc":
        raise ConfigError("password", f"is not used with --auth {mode}", hint="leave --password out")
    if "client_id" not in given:
        raise ConfigError("client_id", f"is required with --auth {mode}", hint="give --client-id REF")
    server_provider = options.get("server_provider") or entry.default_oauth_provider
    provider = oauth.pop("oauth_provider") or _oauth_provider_for(server_provider)
    settings: dict[str, Any] = {
        "provider": provider,
        "token_name": f"{PROFILE_VAULT_PREFIX}{name}",
        "ca_file": oauth_ca_file,
        "scopes": tuple(oauth.pop("scopes") or ()),
        **{k: v for k, v in oauth.items() if v is not None},
        **given,
    }
    if mode == "oauth2-pkce":
        return OAuth2PKCE(**settings)
    if mode == "oauth2-implicit":
        return OAuth2Implicit(**settings)
    settings.pop("redirect_uri", None)
    if mode == "oauth2-ropc":
        return OAuth2ROPC(**settings)
    return OAuth2ClientCredentials(**settings)


_MANAGED_OPTIONS = ("managed_connection", "managed_token", "managed_user", "postroom_server")


def _managed(options: dict[str, Any], given: dict[str, SecretRef], ca_file: str | None) -> Managed:
    """``--auth managed``: the connection on a postroom server, and the runner key that asks for its tokens."""
    for field_name in ("password", "client_id", "tenant_id", "client_secret"):
        if field_name in given:
            raise ConfigError(
                field_name,
                "is not used with --auth managed: the postroom server holds the app and its tokens",
                hint=f"leave --{field_name.replace('_', '-')} out",
            )
    if not options["managed_connection"]:
        raise ConfigError(
            "managed_connection",
            "is required with --auth managed",
            hint="give --managed-connection NAME, the connection's name on the postroom server",
        )
    return Managed(
        options["managed_connection"],
        token=options["managed_token"] or "shared",
        server=options["postroom_server"],
        runner_key=given.get("runner_key"),
        user=options["managed_user"],
        username=given.get("username"),
        ca_file=ca_file,
    )


def _oauth_provider_for(server_provider: str | None) -> str:
    if server_provider and server_provider.startswith("microsoft365"):
        return "microsoft365"
    if server_provider == "gmail":
        return "gmail"
    raise ConfigError(
        "oauth_provider",
        "cannot be guessed from the server",
        hint="give --oauth-provider microsoft365|gmail|custom, or --provider microsoft365|gmail",
    )


class _VaultWrites:
    """The vault values one ``connect`` stored, with what they replaced, so a failure can put them back."""

    def __init__(self) -> None:
        self._replaced: list[tuple[str, str, str | None]] = []

    def set(self, name: str, attribute: str, value: str) -> None:
        before: list[str | None] = []

        def change(current: str | None) -> str:
            before.append(current)
            return value

        CredentialVault.default().update(name, attribute, change)
        self._replaced.append((name, attribute, before[0]))

    def undo(self) -> None:
        for name, attribute, previous in reversed(self._replaced):
            CredentialVault.default().update(name, attribute, lambda _current, old=previous: old)  # type: ignore[misc]
        self._replaced.clear()


def _stored_ref(profile: str, field_name: str, ref: SecretRef, writes: _VaultWrites) -> SecretRef:
    """An insecure string goes into the vault; the profile keeps a reference to it."""
    if not isinstance(ref, Insecure):
        return ref
    vault_name = f"{PROFILE_VAULT_PREFIX}{profile}"
    secret = ref.resolve(ResolveContext(), field_name)  # warns once: typed in on a command line
    writes.set(vault_name, field_name, secret.reveal())
    click.echo(
        f"note: --{field_name.replace('_', '-')} was stored in the vault as vault:{vault_name}/{field_name}", err=True
    )
    return Vault(vault_name, field_name)


@click.command("test-connection")
@json_option
@handle_errors
@profile_name
def test_connection_command(name: str, as_json: bool) -> None:
    """Connect with profile NAME, log in, report what the server offers, disconnect."""
    config = ProfileStore().load(name)
    result = test_connection(config, name=name, variables=state().variables)
    emit(as_json, {"ok": True, "profile": name, **result.to_dict()}, lambda: _print_test(result))


def _print_test(result: ConnectionTest) -> None:
    report = result.report
    click.echo(f"ok: {report.address} — logged in as {result.username} ({result.username_source})")
    if report.https:
        rows = [("server", report.greeting)]
    else:
        rows = [("TLS", f"{report.tls_version}, {report.cipher}" if report.tls_version else "none (plaintext)")]
    rows += [
        ("connect", f"{result.connect_ms:.1f} ms ({report.connect_steps})"),
        ("round trip", f"{result.round_trip_ms:.2f} ms ({report.probe}, median of 3)"),
    ]
    if report.folder_count is not None:
        rows.append(("folders", str(report.folder_count)))
    if report.message_count is not None:
        rows.append(("messages", str(report.message_count)))
    rows.append(("capabilities", " ".join(report.capabilities)))
    if result.smtp is not None:
        smtp = result.smtp
        size = f", messages up to {smtp.max_size // (1 << 20)} MB" if smtp.max_size else ""
        rows.append(("smtp", f"{smtp.address} logged in ({smtp.tls_version or 'no TLS'}{size})"))
    elif result.smtp_error is not None:
        rows.append(("smtp", f"FAILED: {redact(str(result.smtp_error))} (reading works; sending would not)"))
    for label, value in rows:
        click.echo(f"  {label:<13}{value}")


@click.group("profiles", invoke_without_command=True)
@json_option
@click.pass_context
@handle_errors
def profiles_group(ctx: click.Context, as_json: bool) -> None:
    """List saved connection profiles (or show / delete one)."""
    if ctx.invoked_subcommand is not None:
        return
    store = ProfileStore()
    data = {name: store.raw(name) for name in store.names()}

    def human() -> None:
        if not data:
            click.echo("no profiles yet: create one with `postroom connect NAME ...`")
        for name, record in data.items():
            settings = record["settings"]
            where = settings.get("host") or settings.get("url") or settings.get("provider")
            click.echo(f"{name}: {settings.get('protocol', 'imap')} {where} ({record['auth']['mode']})")

    emit(as_json, {"profiles": data}, human)


@profiles_group.command("show")
@click.argument("name")
@json_option
@handle_errors
def profiles_show(name: str, as_json: bool) -> None:
    """Show profile NAME: settings and secret references (never values)."""
    record = ProfileStore().raw(name)
    config = ProfileStore().load(name)

    def human() -> None:
        click.echo(f"{name}: {config.address}")
        for key, value in {**record["settings"], **record["auth"]}.items():
            click.echo(f"  {key:<19}{value}")

    emit(as_json, {"profile": name, "address": config.address, **record}, human)


@profiles_group.command("delete")
@click.argument("name")
@json_option
@handle_errors
def profiles_delete(name: str, as_json: bool) -> None:
    """Delete profile NAME and the vault entries `connect` made for it (vault:profile:NAME: secrets typed in,
    OAuth2 tokens); entries the profile only refers to stay."""
    ProfileStore().delete(name)
    vault = CredentialVault.default()
    own = f"{PROFILE_VAULT_PREFIX}{name}"
    removed = own in vault.list()
    if removed:
        vault.delete(own)
    note = f" and its vault entries (vault:{own})" if removed else ""
    emit(
        as_json,
        {"ok": True, "deleted": name, "vault_entries_removed": removed},
        lambda: click.echo(f"deleted profile {name!r}{note}"),
    )
