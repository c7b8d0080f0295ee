"""Secret references: vault, variable, insecure string; secrets never show themselves."""

from __future__ import annotations

import logging
import pickle
import warnings

import pytest

from postroom import Basic, CredentialError, Insecure, InsecureSecretWarning, Plain, Secret, Variable, Vault, redact
from postroom.credentials import CredentialVault, ResolveContext
from postroom.logs import get_logger

CANARY = "canary-Pw-9f3b1c"


def test_secret_hides_its_value_everywhere() -> None:
    secret = Secret(CANARY)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", f"{secret:>20}", repr([secret])):
        assert CANARY not in text
    assert secret.reveal() == CANARY
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_auth_repr_shows_references_never_values() -> None:
    auth = Basic(username=Variable("mailbox"), password=Insecure(CANARY))
    assert repr(auth) == "Basic(username=var:mailbox, password=insecure:***)"
    assert CANARY not in repr(auth) and CANARY not in str(auth.describe())


def test_redact_scrubs_known_secrets() -> None:
    Secret(CANARY)
    assert redact(f"server said: bad password {CANARY}!") == "server said: bad password ***!"


def test_postroom_loggers_scrub_secrets(caplog: pytest.LogCaptureFixture) -> None:
    Secret(CANARY)
    with caplog.at_level(logging.DEBUG, logger="postroom"):
        get_logger("postroom.anything").warning("login with %s failed", CANARY)
    assert "login with *** failed" in caplog.text
    assert CANARY not in caplog.text


def test_a_bots_own_logger_under_postroom_is_scrubbed_too(caplog: pytest.LogCaptureFixture) -> None:
    """Made with logging.getLogger, not get_logger: a filter on a parent logger never reached it."""
    Secret(CANARY)
    with caplog.at_level(logging.DEBUG, logger="postroom"):
        logging.getLogger("postroom.bot").info("token %s", CANARY)
        try:
            raise RuntimeError(f"refused {CANARY}")
        except RuntimeError:
            logging.getLogger("postroom.bot.steps").exception("step failed")
    assert "token ***" in caplog.text
    assert "refused ***" in caplog.text  # the traceback too
    assert CANARY not in caplog.text
    with caplog.at_level(logging.DEBUG, logger="postroomish"):
        logging.getLogger("postroomish").info("not ours: %s", CANARY)  # only postroom's names are touched
    assert f"not ours: {CANARY}" in caplog.text


def test_variable_resolves_from_bot_variables_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    context = ResolveContext(variables={"pw": "from-bot"})
    assert Variable("pw").resolve(context, "password").reveal() == "from-bot"
    monkeypatch.setenv("pw", "from-env")
    assert Variable("pw").resolve(context, "password").reveal() == "from-bot"
    assert Variable("pw", environment_only=True).resolve(context, "password").reveal() == "from-env"
    assert Variable("pw").resolve(ResolveContext(), "password").reveal() == "from-env"


def test_missing_variable_names_field_variable_and_fix() -> None:
    with pytest.raises(CredentialError) as caught:
        Variable("MISSING_PW").resolve(ResolveContext(), "password")
    message = str(caught.value)
    assert message.startswith("password: variable 'MISSING_PW' is not set")
    assert "--var MISSING_PW=" in message


def test_insecure_string_warns_once_per_field() -> None:
    context = ResolveContext()
    with pytest.warns(InsecureSecretWarning, match="password is an insecure string"):
        Insecure("x1").resolve(context, "password")
    with pytest.warns(InsecureSecretWarning, match="username is an insecure string"):
        Insecure("x2").resolve(context, "username")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Insecure("x3").resolve(context, "password")  # second time: silent


def test_plain_string_is_taken_as_insecure_for_a_secret_and_as_it_is_for_an_identifier() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an identifier typed in warns about nothing
        auth = Basic(username="bot@example.test", password=CANARY)
        assert auth.username.resolve(ResolveContext(), "username").reveal() == "bot@example.test"
    assert isinstance(auth.password, Insecure)
    assert auth.username == Plain("bot@example.test")
    assert CANARY not in repr(auth) and "bot@example.test" in repr(auth)


def test_tenant_and_client_ids_stay_readable_in_error_text() -> None:
    """Identifiers are not scrubbed: an error's sign-in URL still shows which tenant it went to."""
    tenant = Vault("app", "tenant_id")
    vault = CredentialVault()
    vault.set("app", "tenant_id", "5f1c2b7e-tenant")
    resolved = tenant.resolve(ResolveContext(vault=vault), "tenant_id")
    assert redact(f"https://login.example/{resolved.reveal()}/oauth2") == "https://login.example/5f1c2b7e-tenant/oauth2"


def test_vault_reference_resolves_through_the_vault() -> None:
    vault = CredentialVault()
    vault.set("mail", "password", CANARY)
    secret = Vault("mail", "password").resolve(ResolveContext(vault=vault), "password")
    assert secret.reveal() == CANARY


def test_resolved_secret_with_line_break_is_refused_before_the_wire() -> None:
    auth = Basic(username=Variable("u"), password=Variable("p"))
    with pytest.raises(CredentialError, match="password contains a line break"):
        auth.resolve(ResolveContext(variables={"u": "bot", "p": "pw\n"}))
    with pytest.raises(CredentialError, match="username is empty"):
        auth.resolve(ResolveContext(variables={"u": "", "p": "pw"}))
