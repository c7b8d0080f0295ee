"""The CLI: profiles by reference, test-connection, vault, JSON everywhere, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from postroom.cli.main import cli
from postroom.credentials import CredentialVault
from tests.conftest import PASSWORD, USER
from tests.servers.dovecot import Dovecot, free_port

CANARY = "Canary-Cli-Pw-3c9e"


def run(*args: str, input: str | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def connect_args(server: Dovecot, name: str = "box", port_name: str = "imaps", *extra: str) -> list[str]:
    assert server.certs is not None
    security = "ssl" if port_name.endswith("s") else "starttls"
    protocol = "pop3" if port_name.startswith("pop3") else "imap"
    return [
        "connect",
        name,
        "--protocol",
        protocol,
        "--host",
        "LocalHost",
        "--port",
        str(server.ports[port_name]),
        "--security",
        security,
        "--ca-file",
        str(server.certs.ca_file),
        "--username",
        "var:MAILBOX_USER",
        "--password",
        "vault:mailbox/password",
        *extra,
    ]


def test_every_command_has_help() -> None:
    def walk(command: click.Command, path: list[str]) -> None:
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert (command.help or "").strip(), f"{' '.join(path)} has no help"
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])

    walk(cli, [])


def test_vault_round_trip_from_stdin() -> None:
    assert run("vault", "set", "mailbox", "password", input=CANARY + "\n").exit_code == 0
    listed = run("vault", "list", "--json")
    assert json.loads(listed.stdout) == {"credentials": {"mailbox": ["password"]}}
    hidden = run("vault", "get", "mailbox", "password")
    assert CANARY not in hidden.output and "***" in hidden.output
    assert run("vault", "get", "mailbox", "password", "--reveal").output.strip() == CANARY
    assert run("vault", "delete", "mailbox").exit_code == 0
    missing = run("vault", "get", "mailbox", "password")
    assert missing.exit_code == 4
    assert missing.stderr.startswith("error: vault:mailbox/password: no credential named 'mailbox'")
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("port_name", ["imaps", "imap", "pop3s", "pop3"])
def test_connect_then_test_connection_over_each_transport(dovecot: Dovecot, port_name: str) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    saved = run("--var", f"MAILBOX_USER={USER}", *connect_args(dovecot, "box", port_name), "--json")
    assert saved.exit_code == 0, saved.output
    assert json.loads(saved.stdout)["settings"]["host"] == "localhost"
    result = run("--var", f"MAILBOX_USER={USER}", "test-connection", "box", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["tls_version"] in {"TLSv1.2", "TLSv1.3"}
    human = run("--var", f"MAILBOX_USER={USER}", "test-connection", "box")
    assert human.output.startswith("ok: ")
    assert "round trip" in human.output and "capabilities" in human.output


def test_profile_never_holds_a_secret_in_clear(dovecot: Dovecot, isolated_home: Path) -> None:
    args = connect_args(dovecot)
    args[args.index("--password") + 1] = CANARY
    result = run(*args)
    assert result.exit_code == 0
    assert "insecure string" in result.stderr
    assert "vault:profile:box/password" in result.stderr
    profile_text = (isolated_home / "profiles.json").read_text()
    assert CANARY not in profile_text and CANARY not in result.output
    assert json.loads(profile_text)["box"]["auth"]["password"] == "vault:profile:box/password"
    shown = run("profiles", "show", "box", "--json")
    assert CANARY not in shown.output


def test_wrong_password_is_one_line_with_exit_code(dovecot: Dovecot) -> None:
    run("vault", "set", "mailbox", "password", input=CANARY)
    run(*connect_args(dovecot))
    result = run("--var", f"MAILBOX_USER={USER}", "test-connection", "box")
    assert result.exit_code == 7
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: session 'box' imaps://localhost:")
    assert "login refused" in lines[0]
    assert CANARY not in result.output + result.stderr


def test_errors_in_json_mode_are_json_too(dovecot: Dovecot) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    args = connect_args(dovecot)
    args[args.index("--port") + 1] = str(free_port())
    run(*args)
    result = run("--var", f"MAILBOX_USER={USER}", "test-connection", "box", "--json")
    assert result.exit_code == 6
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ServerUnreachableError"
    assert "connection refused" in error["message"]


def test_missing_variable_names_the_field_and_the_fix(dovecot: Dovecot) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    run(*connect_args(dovecot))
    result = run("test-connection", "box")
    assert result.exit_code == 4
    assert "username: variable 'MAILBOX_USER' is not set" in result.stderr
    assert "--var MAILBOX_USER=" in result.stderr


def test_bad_setting_is_refused_before_saving(isolated_home: Path) -> None:
    result = run("connect", "x", "--host", "imaps://mail.example.com", "--username", "var:U", "--password", "var:P")
    assert result.exit_code == 3
    assert result.stderr.startswith("error: host: 'imaps://mail.example.com' is a URL")
    assert not (isolated_home / "profiles.json").exists()


def test_unknown_profile_lists_the_known_ones() -> None:
    run("connect", "alpha", "--host", "mail.example.com", "--username", "var:U", "--password", "var:P")
    result = run("test-connection", "beta")
    assert "no connection profile named 'beta' (profiles: 'alpha')" in result.stderr
    listed = json.loads(run("profiles", "--json").stdout)
    assert list(listed["profiles"]) == ["alpha"]
    assert run("profiles", "delete", "alpha").exit_code == 0
    assert json.loads(run("profiles", "--json").stdout) == {"profiles": {}}


def test_provider_preset_from_the_cli() -> None:
    result = run("connect", "g", "--provider", "gmail", "--username", "var:U", "--password", "var:P", "--json")
    data = json.loads(result.stdout)
    assert data["address"] == "imaps://imap.gmail.com:993"
    assert "host" not in data["settings"]  # filled from the preset, so it follows the preset


def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "test-connection", "nope")
    assert "Traceback" in result.stderr


def test_real_subprocess_end_to_end(dovecot: Dovecot, isolated_home: Path) -> None:
    env = {**os.environ, "POSTROOM_HOME": str(isolated_home), "MAILBOX_USER": USER, "MAILBOX_PW": PASSWORD}
    postroom = [sys.executable, "-m", "postroom"]
    args = connect_args(dovecot, "sub", "pop3s")
    args[args.index("--password") + 1] = "env:MAILBOX_PW"
    saved = subprocess.run([*postroom, *args], env=env, capture_output=True, text=True, timeout=60)
    assert saved.returncode == 0, saved.stderr
    tested = subprocess.run(
        [*postroom, "test-connection", "sub", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert tested.returncode == 0, tested.stderr
    assert json.loads(tested.stdout)["protocol"] == "pop3"
    assert PASSWORD not in tested.stdout + tested.stderr


def test_an_identifier_typed_in_is_kept_as_given_and_warns_about_nothing(dovecot: Dovecot, isolated_home: Path) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    args = connect_args(dovecot)
    args[args.index("--username") + 1] = USER
    result = run(*args, "--test")
    assert result.exit_code == 0, result.output
    assert "insecure" not in result.stderr and "stored in the vault" not in result.stderr
    profile = json.loads((isolated_home / "profiles.json").read_text())
    assert profile["box"]["auth"]["username"] == USER
    assert "profile:box" not in CredentialVault.default().list()  # nothing was moved into the vault


def test_a_connect_that_fails_leaves_no_profile_and_no_vault_entry_behind(
    dovecot: Dovecot, isolated_home: Path
) -> None:
    args = connect_args(dovecot)
    args[args.index("--username") + 1] = USER
    args[args.index("--password") + 1] = "wrong-password"
    failed = run(*args, "--test")
    assert failed.exit_code == 7, failed.output
    assert not (isolated_home / "profiles.json").exists()
    assert "profile:box" not in CredentialVault.default().list()
    # a good one saves; a failing update of it keeps the profile and the secret it had
    args[args.index("--password") + 1] = PASSWORD
    assert run(*args, "--test").exit_code == 0
    args[args.index("--password") + 1] = "wrong-again"
    assert run(*args, "--test").exit_code == 7
    assert CredentialVault.default().get("profile:box", "password").reveal() == PASSWORD
    assert run("test-connection", "box").exit_code == 0
    deleted = run("profiles", "delete", "box")
    assert deleted.exit_code == 0 and "vault entries" in deleted.output
    assert "profile:box" not in CredentialVault.default().list()  # the secret connect stored went with it


def test_debug_is_accepted_after_the_command_too() -> None:
    for args in (["--debug", "list", "-s", "nope"], ["list", "-s", "nope", "--debug"], ["list", "-s", "nope", "-v"]):
        result = run(*args)
        assert result.exit_code == 5, args
        assert "Traceback" in result.stderr, args
    assert "Traceback" not in run("list", "-s", "nope").stderr


def test_errors_speak_the_commands_flags(dovecot_without_tls: Dovecot) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    result = run(
        "connect", "box", "--host", "localhost", "--port", str(dovecot_without_tls.ports["imap"]),
        "--security", "starttls", "--username", USER, "--password", "vault:mailbox/password", "--test", "--json",
    )  # fmt: skip
    assert result.exit_code == 6
    assert "--security ssl" in result.stderr and "security='ssl'" not in result.stderr  # the CLI's words
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "StartTLSError" and "security='ssl'" in error["hint"]  # JSON keeps the API's
    refused = json.loads(run("reply", "-s", "box", "--subject", "x", "-j").stdout)  # one envelope, with the field
    assert refused["ok"] is False
    assert refused["error"]["field"] == "body" and refused["error"]["type"] == "ConfigError"


def test_every_command_names_the_profile_the_same_ways(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    assert run("--var", f"MAILBOX_USER={USER}", *connect_args(dovecot)).exit_code == 0
    for named in (["box"], ["-s", "box"], ["--session", "box"]):
        assert run("--var", f"MAILBOX_USER={USER}", "test-connection", *named).exit_code == 0, named
    monkeypatch.setenv("POSTROOM_SESSION", "box")
    assert run("--var", f"MAILBOX_USER={USER}", "test-connection").exit_code == 0
    monkeypatch.delenv("POSTROOM_SESSION")
    unnamed = run("test-connection")
    assert unnamed.exit_code == 3 and "POSTROOM_SESSION" in unnamed.stderr


def test_shell_completion_offers_the_saved_profiles(dovecot: Dovecot) -> None:
    run("vault", "set", "mailbox", "password", input=PASSWORD)
    assert run(*connect_args(dovecot, "invoices")).exit_code == 0
    assert run(*connect_args(dovecot, "alerts")).exit_code == 0
    env = {**os.environ, "_POSTROOM_COMPLETE": "bash_complete", "COMP_WORDS": "postroom list -s inv", "COMP_CWORD": "3"}
    completed = subprocess.run([sys.executable, "-m", "postroom"], env=env, capture_output=True, text=True, check=True)
    assert "invoices" in completed.stdout and "alerts" not in completed.stdout


def test_a_usage_error_under_json_comes_in_the_same_envelope() -> None:
    found = subprocess.run(
        [sys.executable, "-m", "postroom", "list", "--bogus", "--json"], capture_output=True, text=True, check=False
    )
    assert found.returncode == 2
    error = json.loads(found.stdout)["error"]
    assert error["type"] == "UsageError" and "--bogus" in error["message"] and error["field"] is None
    assert "No such option" in found.stderr
