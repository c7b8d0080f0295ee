"""Connect settings for *EWS*: Exchange Web Services on an on-premises Exchange server (or Exchange Online).

Where the server is, in order: ``url`` (the full EWS URL), ``host`` (becomes
``https://<host>/EWS/Exchange.asmx``), ``provider="microsoft365"`` (Exchange Online
in the chosen Azure cloud), else autodiscover from the domain of the username.
``domain`` is the Windows (Active Directory) domain for NTLM and Basic: a bare user
name then logs in as ``DOMAIN\\user``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from postroom.auth.base import AuthMode
from postroom.auth.oauth.endpoints import MicrosoftService, register_microsoft_service
from postroom.config.base import Setting
from postroom.config.email_server import COMMON_SETTINGS, AzureCloud, check_https_settings, warn_unverified
from postroom.errors import ConfigError, PostroomWarning
from postroom.validation import check_choice, normalise_host

__all__ = ["EWS_SETTINGS", "EXCHANGE_ONLINE_HOSTS", "EXCHANGE_VERSIONS", "AccessType", "Ews", "EwsRetirementWarning"]

AccessType = Literal["delegate", "impersonation"]

#: Exchange Online's EWS host per Azure cloud.
EXCHANGE_ONLINE_HOSTS: dict[str, str] = {"global": "outlook.office365.com", "gcc-high": "outlook.office365.us"}

#: Accepted spellings (case-insensitive, spaces ignored) → the EWS ``RequestServerVersion`` value.
EXCHANGE_VERSIONS: dict[str, str] = {
    "exchange2007_sp1": "Exchange2007_SP1",
    "exchange2010": "Exchange2010",
    "exchange2010_sp1": "Exchange2010_SP1",
    "exchange2010_sp2": "Exchange2010_SP2",
    "exchange2013": "Exchange2013",
    "exchangeserver2013": "Exchange2013",
    "exchange2013_sp1": "Exchange2013_SP1",
    "exchange2016": "Exchange2016",
    "exchangeserver2016": "Exchange2016",
    "exchange2019": "Exchange2016",  # 2019 speaks the 2016 schema
    "exchangeserver2019": "Exchange2016",
}


#: EWS tokens: the app resource host in the delegated scope too (``https://outlook.office365.com/EWS.AccessAsUser.All``).
EWS_OAUTH = register_microsoft_service(
    MicrosoftService(
        "ews",
        delegated=lambda cloud: (f"{cloud.app_resource}/EWS.AccessAsUser.All",),
        app=lambda cloud: (f"{cloud.app_resource}/.default",),
    )
)


class EwsRetirementWarning(PostroomWarning):
    """EWS on Exchange Online is being retired: blocked from 1 Oct 2026, shut down on 1 Apr 2027."""


@dataclass(frozen=True, kw_only=True)
class Ews:
    """An Exchange server reached through Exchange Web Services (SOAP over HTTPS).

    ``version`` (e.g. ``"Exchange2013"``, ``"Exchange2010_SP2"``) skips a round trip
    when given; otherwise the server's is detected. ``mailbox`` opens a shared
    mailbox (delegate access) or, with ``access_type="impersonation"``, acts as that
    user (app-only OAuth2 needs impersonation, and it is the default there).
    """

    auth: AuthMode
    url: str | None = None
    host: str | None = None
    provider: str | None = None
    azure_cloud: AzureCloud = "global"
    version: str | None = None
    domain: str | None = None
    mailbox: str | None = None
    access_type: AccessType | None = None
    verify_certificate: bool = True
    ca_file: Path | str | None = None
    connect_timeout: float = 15.0
    read_timeout: float = 120.0
    #: How long to keep retrying when the server throttles (``ErrorServerBusy``); 0 fails at once.
    max_throttle_wait: float = 300.0
    protocol: Literal["ews"] = field(default="ews", init=False)

    def __post_init__(self) -> None:
        check_choice("azure_cloud", self.azure_cloud, AzureCloud)
        if self.provider is not None and str(self.provider).strip().lower() != "microsoft365":
            raise ConfigError(
                "provider", f"{self.provider!r} has no EWS", hint="use provider='microsoft365' or give host="
            )
        if self.url is not None:
            parts = urlsplit(str(self.url).strip())
            if parts.scheme not in ("https", "http") or not parts.hostname:
                raise ConfigError(
                    "url", f"{self.url!r} is not an EWS URL", hint="e.g. https://mail.example.com/EWS/Exchange.asmx"
                )
            if parts.scheme == "http":
                raise ConfigError("url", "is not https", hint="EWS carries the password: use the https:// URL")
            object.__setattr__(self, "url", parts._replace(netloc=parts.netloc.lower()).geturl())
        elif self.host is not None:
            host = normalise_host("host", self.host)
            object.__setattr__(self, "host", host)
            object.__setattr__(self, "url", f"https://{host}/EWS/Exchange.asmx")
        elif self.provider is not None:
            object.__setattr__(self, "url", f"https://{EXCHANGE_ONLINE_HOSTS[self.azure_cloud]}/EWS/Exchange.asmx")
        if self.version is not None:
            key = str(self.version).replace(" ", "").lower()
            if key not in EXCHANGE_VERSIONS:
                names = sorted(set(EXCHANGE_VERSIONS.values()))
                raise ConfigError(
                    "version",
                    f"{self.version!r} is not an Exchange version",
                    hint=f"one of {', '.join(names)}, or leave it out to detect",
                )
            object.__setattr__(self, "version", EXCHANGE_VERSIONS[key])
        if self.domain is not None:
            domain = str(self.domain).strip()
            if not domain or any(ch in domain for ch in "\\/@\r\n\t "):
                raise ConfigError(
                    "domain",
                    f"{self.domain!r} is not a Windows domain name",
                    hint="e.g. CORP (NTLM logs in as CORP\\user)",
                )
            object.__setattr__(self, "domain", domain)
        if self.mailbox is not None and "@" not in str(self.mailbox):
            raise ConfigError(
                "mailbox",
                f"{self.mailbox!r} is not an email address",
                hint="give the shared mailbox's primary SMTP address",
            )
        if self.access_type is not None:
            check_choice("access_type", self.access_type, AccessType)
        check_https_settings(self)
        if not hasattr(self.auth, "resolve") or not hasattr(self.auth, "kind"):
            raise ConfigError("auth", f"expected an auth mode such as Basic(...), got {type(self.auth).__name__}")
        if self.auth.kind in {"oauth2-pkce", "oauth2-implicit"} and self.access_type == "impersonation":
            raise ConfigError(
                "access_type", "impersonation is for app-only access", hint="use client credentials, or delegate"
            )
        bind = getattr(self.auth, "for_server", None)
        if bind is not None:
            provider = "microsoft365" if self.is_exchange_online or self.provider else None
            object.__setattr__(self, "auth", bind(provider, self.azure_cloud, service=EWS_OAUTH.name))
        if not self.verify_certificate:
            warn_unverified(self.server_host)
        if self.is_exchange_online:
            warnings.warn(
                f"{self.server_host} is Exchange Online, where Microsoft is retiring EWS (blocked tenant by tenant "
                "from 1 Oct 2026, shut down on 1 Apr 2027): connect with Outlook (Microsoft Graph) instead",
                EwsRetirementWarning,
                stacklevel=3,
            )

    @property
    def server_host(self) -> str | None:
        return urlsplit(self.url).hostname if self.url else None

    @property
    def is_exchange_online(self) -> bool:
        return self.server_host in EXCHANGE_ONLINE_HOSTS.values()

    @property
    def effective_access_type(self) -> AccessType:
        """Impersonation for app-only OAuth2 (it has no user of its own), else delegate, unless given."""
        if self.access_type is not None:
            return self.access_type
        return "impersonation" if self.auth.kind == "oauth2-client-credentials" else "delegate"

    @property
    def address(self) -> str:
        """The EWS URL, or ``ews://autodiscover`` until autodiscover has found it."""
        return self.url or "ews://autodiscover"

    def given(self) -> dict[str, Any]:
        """The settings as given: the URL is left out where it is derived from host or provider."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        if self.host is not None or self.provider is not None:
            given["url"] = None
        return given

    def clone(self, **changes: Any) -> Ews:
        """A copy with ``changes`` applied and validated again."""
        given = {**self.given(), **changes}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", EwsRetirementWarning)
            return Ews(**given)


#: What ``postroom connect --protocol ews`` offers.
EWS_SETTINGS = (
    Setting("url", "EWS: the full EWS URL (default: https://HOST/EWS/Exchange.asmx, or autodiscover)."),
    Setting("host", "Server host name (filled by --provider when left out)."),
    Setting("provider", "Fill host/port/security.", choices=("microsoft365",)),
    Setting("azure_cloud", "Microsoft 365 cloud (default global).", choices=("global", "gcc-high")),
    Setting(
        "version",
        "EWS: Exchange2007_SP1, Exchange2010, Exchange2010_SP1, Exchange2010_SP2, Exchange2013, Exchange2016 "
        "(default: detected).",
        option="--exchange-version",
    ),
    Setting("domain", "EWS: Windows domain for NTLM/Basic (a bare user logs in as DOMAIN\\user)."),
    Setting("mailbox", "Shared mailbox to open (EWS: delegate or impersonation; IMAP/POP3: with an OAuth2 token)."),
    Setting("access_type", "EWS: how to open --mailbox.", choices=("delegate", "impersonation")),
    Setting("max_throttle_wait", "EWS: seconds to wait out throttling (0: fail at once).", type=float),
    *COMMON_SETTINGS,
)
