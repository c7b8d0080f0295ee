"""A plain ``pip install postroom`` (no extras), in a fresh virtualenv: IMAP, SMTP and Basic auth work
against the real servers, and each feature of a missing extra fails with the exact pip line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PASSWORD
from tests.mail_samples import simple
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpServerUnderTest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def core_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with postroom installed from a copy of this tree, without any extra."""
    where = tmp_path_factory.mktemp("core")
    source = where / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "venv", str(where / "venv")], check=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True,
        timeout=300,
    )
    return python


SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys, warnings
    import postroom
    from postroom import Basic, EmailServer, Ews, OAuth2PKCE, Variable

    host, imaps, smtp_port, ca, user, password = sys.argv[1:]
    out = {"optional_installed": [m for m in ("msal", "authlib", "exchangelib", "requests")
                                  if importlib.util.find_spec(m)]}
    login = Basic(username=Variable("U"), password=Variable("P"))
    names = {"U": user, "P": password}
    config = EmailServer(host=host, port=int(imaps), ca_file=ca, auth=login,
                         smtp_host=host, smtp_port=int(smtp_port), smtp_security="starttls")
    with postroom.connect("core", config, variables=names) as session:
        out["subjects"] = [m.subject for m in postroom.messages(session)]
        receipt = postroom.send(session, to=user, subject="sent by the core install", body="hi")
        out["sent"] = list(receipt.recipients)
    missing = {}
    attempts = {
        "microsoft": lambda: postroom.connect("ms", EmailServer(provider="microsoft365", auth=OAuth2PKCE(
            provider="microsoft365", client_id=Variable("C"), tenant_id=Variable("T"), username="a@contoso.com")),
            variables={"C": "c", "T": "t"}),
        "oauth": lambda: postroom.connect("g", EmailServer(provider="gmail", auth=OAuth2PKCE(
            provider="gmail", client_id=Variable("C"), client_secret=Variable("S"), username="a@gmail.com")),
            variables={"C": "c", "S": "s"}),
        "ews": lambda: postroom.connect("e", Ews(url="https://mail.example.com/EWS/Exchange.asmx", auth=login),
                                        variables=names),
    }
    for extra, attempt in attempts.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                attempt()
        except postroom.MissingExtraError as exc:
            missing[extra] = exc.hint
        except postroom.PostroomError as exc:
            missing[extra] = f"unexpected {type(exc).__name__}: {exc}"
    out["missing"] = missing
    print(json.dumps(out))
    """
)


def test_a_plain_install_reads_and_sends_and_names_each_missing_extra(
    core_python: Path, dovecot: Dovecot, smtp: SmtpServerUnderTest, mailbox_user: str, tmp_path: Path
) -> None:
    assert dovecot.certs is not None
    dovecot.deliver(mailbox_user, simple("for the core install"))
    script = tmp_path / "core.py"
    script.write_text(SCRIPT, encoding="utf-8")
    args = ["localhost", str(dovecot.ports["imaps"]), str(smtp.starttls_port), str(dovecot.certs.ca_file)]
    done = subprocess.run(
        [str(core_python), str(script), *args, mailbox_user, PASSWORD],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "POSTROOM_HOME": str(tmp_path / "home"), "POSTROOM_VAULT_KEY": "x" * 44},
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["optional_installed"] == []
    assert found["subjects"] == ["for the core install"]
    assert found["sent"] == [mailbox_user]
    assert found["missing"] == {
        "microsoft": "pip install 'postroom[microsoft]'",
        "oauth": "pip install 'postroom[oauth]'",
        "ews": "pip install 'postroom[ews]'",
    }
