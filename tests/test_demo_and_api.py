"""The README's first command, and the public API surface."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import postroom
from postroom.cli.main import cli


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
    }
    assert public == exported - {"__version__"}


def test_every_error_is_a_postroom_error() -> None:
    for name in postroom.__all__:
        obj = getattr(postroom, name)
        if isinstance(obj, type) and issubclass(obj, Exception) and not issubclass(obj, Warning):
            assert issubclass(obj, postroom.PostroomError), name
        if isinstance(obj, type) and issubclass(obj, Warning):
            assert issubclass(obj, postroom.PostroomWarning), name
