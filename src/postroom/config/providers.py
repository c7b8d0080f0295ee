"""Provider presets ("email server settings"): host, port and security per protocol.

Data only. Each provider cites the page its values come from; when a provider
changes its settings, this table is the one place to edit. Values were taken from
those pages; rows marked *secondary* come from Microsoft partner documentation and
community sources because Microsoft publishes GCC High hosts only piecemeal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["PROVIDERS", "Endpoint", "ProviderPreset", "Security"]

Security = Literal["ssl", "starttls", "none"]


@dataclass(frozen=True)
class Endpoint:
    """Where one protocol of a provider is served."""

    host: str
    port: int
    security: Security


@dataclass(frozen=True)
class ProviderPreset:
    """A provider's published settings. ``None`` means the provider does not offer the protocol."""

    id: str
    name: str
    imap: Endpoint | None
    pop3: Endpoint | None
    smtp: Endpoint | None
    source: str
    note: str = ""
    #: The provider's mail servers refuse passwords (Basic auth) altogether: only OAuth2 signs in.
    refuses_passwords: bool = False
    #: The guide in docs/ that walks through this provider's set-up, if there is one.
    guide: str = ""

    def endpoint(self, protocol: str) -> Endpoint | None:
        found: Endpoint | None = getattr(self, protocol)
        return found


_PRESETS = (
    # https://support.google.com/mail/answer/7126229 ("Check Gmail through other email platforms")
    ProviderPreset(
        id="gmail",
        name="Gmail / Google Workspace",
        imap=Endpoint("imap.gmail.com", 993, "ssl"),
        pop3=Endpoint("pop.gmail.com", 995, "ssl"),
        smtp=Endpoint("smtp.gmail.com", 465, "ssl"),
        source="https://support.google.com/mail/answer/7126229",
        note="Workspace accounts need OAuth2; personal accounts an app password with 2-Step Verification.",
        guide="docs/gmail.md",
    ),
    # https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/pop3-and-imap4/pop3-and-imap4
    # ("POP3 and IMAP4 in Exchange Online": outlook.office365.com 993/995, smtp.office365.com 587 STARTTLS)
    ProviderPreset(
        id="microsoft365",
        name="Microsoft 365 (Azure Global)",
        imap=Endpoint("outlook.office365.com", 993, "ssl"),
        pop3=Endpoint("outlook.office365.com", 995, "ssl"),
        smtp=Endpoint("smtp.office365.com", 587, "starttls"),
        source="https://learn.microsoft.com/exchange/clients-and-mobile-in-exchange-online/pop3-and-imap4/pop3-and-imap4",
        note="Basic auth is disabled for IMAP/POP in Exchange Online: use OAuth2.",
        refuses_passwords=True,
        guide="docs/microsoft365.md",
    ),
    # secondary: Microsoft 365 GCC High endpoint lists (learn.microsoft.com "Microsoft 365 U.S. Government
    # GCC High endpoints", outlook.office365.us) and partner documentation for smtp.office365.us.
    ProviderPreset(
        id="microsoft365-gcc-high",
        name="Microsoft 365 (Azure US GCC High)",
        imap=Endpoint("outlook.office365.us", 993, "ssl"),
        pop3=Endpoint("outlook.office365.us", 995, "ssl"),
        smtp=Endpoint("smtp.office365.us", 587, "starttls"),
        source="https://learn.microsoft.com/microsoft-365/enterprise/microsoft-365-u-s-government-gcc-high-endpoints",
        note="GCC moderate tenants use the Azure Global endpoints.",
        refuses_passwords=True,
        guide="docs/microsoft365.md",
    ),
    # https://support.microsoft.com/office/pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040
    ProviderPreset(
        id="outlook.com",
        name="Outlook.com / Hotmail",
        imap=Endpoint("outlook.office365.com", 993, "ssl"),
        pop3=Endpoint("outlook.office365.com", 995, "ssl"),
        smtp=Endpoint("smtp-mail.outlook.com", 587, "starttls"),
        source="https://support.microsoft.com/office/d088b986-291d-42b8-9564-9c414e2aa040",
        note="Personal Microsoft accounts need OAuth2 for IMAP/POP.",
        refuses_passwords=True,
        guide="docs/microsoft365.md",
    ),
    # https://help.yahoo.com/kb/SLN4075.html ("IMAP server settings for Yahoo Mail") and SLN4724 (POP)
    ProviderPreset(
        id="yahoo",
        name="Yahoo Mail",
        imap=Endpoint("imap.mail.yahoo.com", 993, "ssl"),
        pop3=Endpoint("pop.mail.yahoo.com", 995, "ssl"),
        smtp=Endpoint("smtp.mail.yahoo.com", 465, "ssl"),
        source="https://help.yahoo.com/kb/SLN4075.html",
        note="Needs an app password.",
    ),
    # https://support.apple.com/102525 ("Mail server settings for iCloud email clients"): no POP.
    ProviderPreset(
        id="icloud",
        name="iCloud Mail",
        imap=Endpoint("imap.mail.me.com", 993, "ssl"),
        pop3=None,
        smtp=Endpoint("smtp.mail.me.com", 587, "starttls"),
        source="https://support.apple.com/102525",
        note="iCloud offers no POP3; needs an app-specific password.",
    ),
    # https://help.aol.com/articles/how-do-i-use-other-email-applications-to-send-and-receive-my-aol-mail
    ProviderPreset(
        id="aol",
        name="AOL Mail",
        imap=Endpoint("imap.aol.com", 993, "ssl"),
        pop3=Endpoint("pop.aol.com", 995, "ssl"),
        smtp=Endpoint("smtp.aol.com", 465, "ssl"),
        source="https://help.aol.com/articles/how-do-i-use-other-email-applications-to-send-and-receive-my-aol-mail",
        note="Needs an app password.",
    ),
    # https://www.zoho.com/mail/help/imap-access.html and pop-access.html (personal accounts;
    # organisation accounts use imappro.zoho.com / poppro.zoho.com: pass host= to override).
    ProviderPreset(
        id="zoho",
        name="Zoho Mail",
        imap=Endpoint("imap.zoho.com", 993, "ssl"),
        pop3=Endpoint("pop.zoho.com", 995, "ssl"),
        smtp=Endpoint("smtp.zoho.com", 465, "ssl"),
        source="https://www.zoho.com/mail/help/imap-access.html",
        note="Organisation accounts: host imappro.zoho.com / poppro.zoho.com; EU data centre: zoho.eu.",
    ),
    # https://support.gmx.com/pop-imap/imap/server.html (gmx.com; gmx.net/gmx.de accounts use *.gmx.net)
    ProviderPreset(
        id="gmx",
        name="GMX Mail",
        imap=Endpoint("imap.gmx.com", 993, "ssl"),
        pop3=Endpoint("pop.gmx.com", 995, "ssl"),
        smtp=Endpoint("mail.gmx.com", 587, "starttls"),
        source="https://support.gmx.com/pop-imap/imap/server.html",
        note="gmx.net / gmx.de accounts: imap.gmx.net, pop.gmx.net, mail.gmx.net.",
    ),
    # https://www.fastmail.help/hc/en-us/articles/1500000278342 ("Server names and ports")
    ProviderPreset(
        id="fastmail",
        name="Fastmail",
        imap=Endpoint("imap.fastmail.com", 993, "ssl"),
        pop3=Endpoint("pop.fastmail.com", 995, "ssl"),
        smtp=Endpoint("smtp.fastmail.com", 465, "ssl"),
        source="https://www.fastmail.help/hc/en-us/articles/1500000278342",
        note="Needs an app password.",
    ),
)

#: Provider id → preset. ``microsoft365`` with ``azure_cloud="gcc-high"`` selects ``microsoft365-gcc-high``.
PROVIDERS: dict[str, ProviderPreset] = {preset.id: preset for preset in _PRESETS}
