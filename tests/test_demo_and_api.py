"""The README's first command, and the public API surface."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import postroom
from postroom.cli.main import cli
from postroom.credentials import CredentialVault
from tests.conftest import PASSWORD, server_config
from tests.mail_samples import PDF, simple
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpServerUnderTest


def test_demo_runs_a_bot_against_the_embedded_server(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--json", "--workdir", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["delivered"] == 8
    assert data["test_connection"]["tls_version"] in {"TLSv1.2", "TLSv1.3"}
    handled = [i["subject"] for i in data["invoices"]]
    assert handled == [
        "Invoice 1041 from Acme Tools",
        "Invoice 1042 from Müller & Söhne GmbH",
        "Invoice 1043 from Globex Corporation",
        "Invoice 1044 from Initech",
    ]
    assert sorted(Path(f).name for i in data["invoices"] for f in i["files"]) == [
        f"invoice-{n}.pdf" for n in range(1041, 1045)
    ]
    assert all(Path(f).read_bytes().startswith(b"%PDF-") for i in data["invoices"] for f in i["files"])
    assert data["invoices"][1]["replied_to"] == ["rechnung@mueller.example"]
    assert data["replies_sent"] == 4
    assert sorted(data["processed"]) == sorted([*handled, "Invoice 1012 from Acme Tools"])
    assert "Invoice 1037 from Acme Tools (paid)" in data["inbox"]
    assert not set(handled) & set(data["inbox"])
    assert postroom.open_sessions() == []


def test_public_api_is_exactly_what_all_says() -> None:
    exported = set(postroom.__all__)
    assert len(exported) == len(postroom.__all__), "duplicates in __all__"
    for name in exported:
        assert hasattr(postroom, name), name
    public = {name for name in vars(postroom) if not name.startswith("_")} - {
        "actions",
        "auth",
        "cli",
        "config",
        "credentials",
        "errors",
        "logs",
        "paths",
        "session",
        "transports",
        "annotations",
        "logging",
        "get_logger",
        "profiles",
        "sandbox",
        "filters",
        "message",
        "redaction",
        "extras",
        "validation",
        "testing",
        "runner",
        "server",
        "database",
    }
    assert public == exported - {"__version__"}


def test_every_error_is_a_postroom_error() -> None:
    for name in postroom.__all__:
        obj = getattr(postroom, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, postroom.PostroomError), name
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, postroom.PostroomWarning), name


def test_the_readme_first_example_runs_as_written(
    dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block under "A bot, from Python", unchanged; only the host names point at the suite's servers."""
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    found = re.search(r"### A bot, from Python\n\n```python\n(.*?)```", text, re.S)
    assert found is not None
    code = found.group(1).replace('"bot@example.com"', repr(mailbox_user))
    assert dovecot.certs is not None
    real = postroom.EmailServer

    def here(**settings: Any) -> postroom.EmailServer:  # the same settings, aimed at loopback
        settings.update(host="localhost", port=dovecot.ports["imaps"], ca_file=dovecot.certs.ca_file)  # type: ignore[union-attr]
        settings.update(smtp_host="localhost", smtp_port=smtp.starttls_port)
        return real(**settings)

    monkeypatch.setattr(postroom, "EmailServer", here)
    CredentialVault.default().set("invoices", "password", PASSWORD)
    dovecot.deliver(mailbox_user, simple("Invoice 4711", attachments={"invoice-4711.pdf": PDF}))
    dovecot.deliver(mailbox_user, simple("lunch?"))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own code
    assert (tmp_path / "out" / "invoice-4711.pdf").read_bytes() == PDF
    assert any(b"Subject: Re: Invoice 4711" in data for _sender, _to, data in smtp.received)
    check = postroom.connect(
        "readme-check", server_config(dovecot), variables={"MAILBOX_USER": mailbox_user, "MAILBOX_PASSWORD": PASSWORD}
    )
    assert [m.subject for m in postroom.messages(check, "Processed")] == ["Invoice 4711"]
    assert [m.subject for m in postroom.messages(check)] == ["lunch?"]


def test_help_shows_each_property_with_its_type_and_the_readme_names_are_exported() -> None:
    import pydoc

    shown = pydoc.render_doc(postroom.Message, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "subject = <property: str>" in shown
    assert "cached object" not in shown
    for name in ("MessageLoop", "MessageProperties", "RopcWarning", "ImplicitGrantWarning", "SavedFile"):
        assert name in postroom.__all__ and hasattr(postroom, name)
    assert postroom.Message.save_attachments.__annotations__["return"] == "list[SavedFile]"


def test_the_demo_cleans_up_after_itself_unless_asked_to_keep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # let TMPDIR count
    result = CliRunner().invoke(cli, ["demo", "--json"], catch_exceptions=False)
    data = json.loads(result.stdout)
    assert data["kept"] is False and not Path(data["output"]).exists()
    assert "this run moved 4 invoice(s)" in " ".join(data["steps"])  # what this run did, not the folder's total
    kept = json.loads(CliRunner().invoke(cli, ["demo", "--json", "--keep"], catch_exceptions=False).stdout)
    assert kept["kept"] is True and Path(kept["output"], "invoice-1041.pdf").exists()
