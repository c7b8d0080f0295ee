"""The transport registry: a backend that no other module names (``postroom.testing``'s in-memory one)
runs connect, a loop, a move and ``postroom list`` through the registry alone."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import postroom
from postroom import Basic, ConfigError, Variable
from postroom.cli.main import cli
from postroom.testing import InMemory, MemoryKey, MemoryServer
from postroom.transports.registry import backend, backends
from tests.mail_samples import simple

PACKAGE = Path(postroom.__file__).parent


@pytest.fixture
def server() -> Iterator[MemoryServer]:
    name = f"reg-{uuid.uuid4().hex[:8]}"
    found = MemoryServer.named(name, users={"bot@example.test": "pw-0123"})
    for number in range(1, 4):
        found.deliver(simple(f"Invoice {number}", body=f"invoice {number}\n"))
    found.deliver(simple("Newsletter"))
    found.create_folder("Processed")
    yield found
    MemoryServer.forget(name)


def login() -> Basic:
    return Basic(username=Variable("MEM_USER"), password=Variable("MEM_PW"))


VARIABLES = {"MEM_USER": "bot@example.test", "MEM_PW": "pw-0123"}


def test_no_module_outside_postroom_testing_names_the_in_memory_backend() -> None:
    outside = [p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts]
    assert len(outside) > 50
    for path in outside:
        text = path.read_text(encoding="utf-8")
        for name in ("postroom.testing", "InMemory", "MemoryMailbox", '"memory"'):
            assert name not in text, f"{path.relative_to(PACKAGE)} names {name}"
    assert backend("memory").config_type is InMemory
    assert "memory" in [entry.protocol for entry in backends()]


def test_connect_loop_and_move_through_the_registry(server: MemoryServer) -> None:
    with postroom.connect("mem", InMemory(server=server.name, auth=login()), variables=VARIABLES) as session:
        assert session.label == "in-memory"
        found = list(postroom.messages(session, subject=r"Invoice [13]", regex=True, order="oldest"))
        assert [m.subject for m in found] == ["Invoice 1", "Invoice 3"]
        assert found[0].text == "invoice 1\n"
        results = postroom.move(session, found, "Processed")
        assert [r.status for r in results] == ["done", "done"]
        assert all(isinstance(r.new_key, MemoryKey) and r.new_key.folder == "Processed" for r in results)
        assert [m.subject for m in postroom.messages(session, folder="Processed", order="oldest")] == [
            "Invoice 1",
            "Invoice 3",
        ]
        again = postroom.move(session, found[0], "Processed")
        assert again[0].status == "failed" and again[0].error is not None
    assert postroom.open_sessions() == []


def test_a_key_string_is_accepted_wherever_a_message_is(server: MemoryServer) -> None:
    with postroom.connect("mem", InMemory(server=server.name, auth=login()), variables=VARIABLES) as session:
        first = next(postroom.messages(session, order="oldest"))
        text = first.properties()["key"]
        assert text.startswith("memory:INBOX;UIDVALIDITY=")
        assert postroom.MessageKey.parse(text) == first.key
        assert postroom.get_message(session, text).subject == "Invoice 1"
        assert postroom.mark_read(session, text)[0].ok
        assert postroom.get_message(session, text).seen is True
        # a key of another kind of server is refused by name, before anything is sent
        with pytest.raises(ConfigError, match="not a message of this in-memory session"):
            postroom.move(session, "INBOX;UIDVALIDITY=1;UID=1", "Processed")


def test_a_wrong_login_is_an_authentication_error(server: MemoryServer) -> None:
    with pytest.raises(postroom.AuthenticationError, match="refused"):
        postroom.connect("mem", InMemory(server=server.name, auth=login()), variables={**VARIABLES, "MEM_PW": "no"})


def test_the_cli_connects_and_lists_through_the_registry(server: MemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEM_USER", VARIABLES["MEM_USER"])
    monkeypatch.setenv("MEM_PW", VARIABLES["MEM_PW"])
    runner = CliRunner()
    made = runner.invoke(
        cli,
        ["connect", "m", "--protocol", "memory", "--server", server.name, "--username", "env:MEM_USER",
         "--password", "env:MEM_PW", "--test", "--json"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    record = json.loads(made.stdout)
    assert record["settings"] == {"protocol": "memory", "server": server.name}
    assert record["test"]["folder_count"] == 2 and record["test"]["protocol"] == "memory"
    listed = runner.invoke(cli, ["list", "--session", "m", "--json", "--subject", "Invoice"])
    assert listed.exit_code == 0, listed.output
    assert sorted(m["subject"] for m in json.loads(listed.stdout)["messages"]) == [
        "Invoice 1",
        "Invoice 2",
        "Invoice 3",
    ]
    moved = runner.invoke(cli, ["move", "--session", "m", "--to", "Processed", "--subject", "Newsletter", "--json"])
    assert moved.exit_code == 0, moved.output
    assert [r["status"] for r in json.loads(moved.stdout)["results"]] == ["done"]
    assert [m.raw.count(b"Newsletter") for m in server.messages("Processed")] == [1]
    # an option the chosen protocol does not offer names the protocols that do
    wrong = runner.invoke(cli, ["connect", "x", "--protocol", "memory", "--server", "s", "--host", "h.example"])
    assert wrong.exit_code == 3 and "--host does not apply to in-memory" in wrong.output
