"""Connect settings: validated at construction, every error naming the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from postroom import (
    PROVIDERS,
    Basic,
    ConfigError,
    EmailServer,
    OAuth2ClientCredentials,
    PlaintextWarning,
    UnverifiedTLSWarning,
    Variable,
)

AUTH = Basic(username=Variable("U"), password=Variable("P"))
M365 = OAuth2ClientCredentials(
    client_id=Variable("C"), tenant_id=Variable("T"), client_secret=Variable("S"), username="bot@contoso.example"
)


def test_defaults_are_implicit_tls_on_the_standard_port() -> None:
    imap = EmailServer(host="mail.example.com", auth=AUTH)
    pop3 = EmailServer(host="mail.example.com", protocol="pop3", auth=AUTH)
    assert (imap.security, imap.port, imap.verify_certificate) == ("ssl", 993, True)
    assert (pop3.security, pop3.port) == ("ssl", 995)
    assert EmailServer(host="h.example", security="starttls", auth=AUTH).port == 143
    assert EmailServer(host="h.example", protocol="pop3", security="starttls", auth=AUTH).port == 110


def test_host_is_case_insensitive_and_stored_normalised() -> None:
    a = EmailServer(host="  IMAP.Example.COM. ", auth=AUTH)
    b = EmailServer(host="imap.example.com", auth=AUTH)
    assert a.host == "imap.example.com"
    assert a == b
    assert EmailServer(host="[::1]", auth=AUTH).address == "imaps://[::1]:993"
    assert EmailServer(host="bücher.example", auth=AUTH).host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("changes", "field", "fix"),
    [
        ({"port": 0}, "port", "1 to 65535"),
        ({"port": 70000}, "port", "1 to 65535"),
        ({"port": "993"}, "port", "1 to 65535"),
        ({"protocol": "imap4x"}, "protocol", "'imap'"),
        ({"security": "tls"}, "security", "'starttls'"),
        ({"host": ""}, "host", "host name"),
        ({"host": "   "}, "host", "host name"),
        ({"host": "imap.example.com\r\nA1 LOGOUT"}, "host", "host name only"),
        ({"host": "imaps://imap.example.com"}, "host", "host name only"),
        ({"host": "imap.example.com:993"}, "host", "port= apart"),
        ({"host": "bad host.example"}, "host", "letters, digits"),
        ({"connect_timeout": 0}, "connect_timeout", "greater than 0"),
        ({"read_timeout": float("inf")}, "read_timeout", "greater than 0"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file", "PEM file"),
        ({"provider": "hotmale"}, "provider", "gmail"),
        ({"auth": "user:password"}, "auth", "Basic"),
        ({"smtp_port": 0, "smtp_host": "smtp.example.com"}, "smtp_port", "1 to 65535"),
    ],
)
def test_invalid_settings_fail_at_construction_naming_field_and_fix(
    changes: dict[str, object], field: str, fix: str
) -> None:
    options: dict[str, object] = {"host": "imap.example.com", "auth": AUTH, **changes}
    with pytest.raises(ConfigError) as caught:
        EmailServer(**options)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert fix in str(caught.value)


def test_host_is_required_without_provider() -> None:
    with pytest.raises(ConfigError, match="host: is required"):
        EmailServer(auth=AUTH)


def test_plaintext_only_when_asked_and_with_a_warning() -> None:
    with pytest.warns(PlaintextWarning, match="unencrypted"):
        config = EmailServer(host="imap.example.com", security="none", auth=AUTH)
    assert config.port == 143


def test_skipping_certificate_verification_warns() -> None:
    with pytest.warns(UnverifiedTLSWarning):
        EmailServer(host="imap.example.com", verify_certificate=False, auth=AUTH)


def test_provider_fills_imap_pop3_and_smtp() -> None:
    gmail = EmailServer(provider="gmail", auth=AUTH)
    assert (gmail.host, gmail.port, gmail.security) == ("imap.gmail.com", 993, "ssl")
    assert (gmail.smtp_host, gmail.smtp_port, gmail.smtp_security) == ("smtp.gmail.com", 465, "ssl")
    pop = EmailServer(provider="gmail", protocol="pop3", auth=AUTH)
    assert (pop.host, pop.port) == ("pop.gmail.com", 995)


def test_explicit_fields_override_the_preset() -> None:
    config = EmailServer(provider="microsoft365", host="imap.contoso.example", security="starttls", auth=AUTH)
    assert (config.host, config.security, config.port) == ("imap.contoso.example", "starttls", 143)
    assert config.smtp_host == "smtp.office365.com"
    assert EmailServer(provider="gmail", port=1993, auth=AUTH).port == 1993


def test_microsoft365_clouds() -> None:
    global_ = EmailServer(provider="microsoft365", auth=M365)
    gcc = EmailServer(provider="Microsoft365", azure_cloud="gcc-high", auth=M365)
    assert (global_.host, global_.smtp_host) == ("outlook.office365.com", "smtp.office365.com")
    assert (gcc.host, gcc.smtp_host) == ("outlook.office365.us", "smtp.office365.us")
    with pytest.raises(ConfigError, match="azure_cloud"):
        EmailServer(provider="microsoft365", azure_cloud="china", auth=M365)  # type: ignore[arg-type]


@pytest.mark.parametrize("provider", ["microsoft365", "outlook.com"])
def test_microsoft_presets_refuse_a_password_naming_oauth2_and_the_guide(provider: str) -> None:
    """Exchange Online turned Basic authentication off: a password there can never log in."""
    with pytest.raises(ConfigError, match="refuses passwords") as raised:
        EmailServer(provider=provider, auth=AUTH)
    assert raised.value.field == "auth"
    assert "OAuth2PKCE" in str(raised.value) and "docs/microsoft365.md" in str(raised.value)
    assert Path("docs/microsoft365.md").is_file()
    # an on-premises Exchange named by host (the preset only fills SMTP) may still take a password
    assert EmailServer(provider="microsoft365", host="mail.contoso.example", auth=AUTH).host == "mail.contoso.example"


def test_provider_without_the_protocol_says_what_it_offers() -> None:
    with pytest.raises(ConfigError, match=r"protocol: iCloud Mail does not offer POP3 — use protocol='imap'"):
        EmailServer(provider="icloud", protocol="pop3", auth=AUTH)


def test_every_preset_is_complete_and_cites_its_source() -> None:
    required = {
        "gmail",
        "microsoft365",
        "microsoft365-gcc-high",
        "outlook.com",
        "yahoo",
        "icloud",
        "aol",
        "zoho",
        "gmx",
        "fastmail",
    }
    assert required <= set(PROVIDERS)
    for preset in PROVIDERS.values():
        assert preset.source.startswith("https://")
        assert preset.imap is not None
        assert preset.smtp is not None
        EmailServer(provider=preset.id, auth=M365 if preset.refuses_passwords else AUTH)  # each builds a valid config


def test_clone_revalidates_and_refills_from_the_preset() -> None:
    config = EmailServer(provider="gmail", auth=AUTH)
    pop = config.clone(protocol="pop3")
    assert (pop.host, pop.port) == ("pop.gmail.com", 995)
    with pytest.raises(ConfigError, match="port"):
        config.clone(port=-1)


def test_ca_file_is_stored_as_a_path(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    assert EmailServer(host="h.example", ca_file=str(ca), auth=AUTH).ca_file == ca
