"""The OAuth2 auth modes: authorization code with PKCE, client credentials, ROPC and implicit.

Like :class:`~postroom.auth.Basic`, a mode is configuration: secret fields (client
id, tenant id, client secret, username) are references to the vault, a variable
or an insecure string. Resolving a mode gives a :class:`TokenLogin` whose token
source reads the vault-cached tokens and refreshes them when they are about to
expire, or when the mail server turned one down.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from postroom.auth.base import TokenLogin, check_wire_safe
from postroom.auth.oauth.clients import AuthorizationFlow, ClientSettings, ResolvedApp
from postroom.auth.oauth.endpoints import (
    MICROSOFT_SERVICES,
    ClientAuth,
    OAuthEndpoints,
    OAuthProvider,
    endpoints_for,
)
from postroom.auth.oauth.loopback import DEFAULT_REDIRECT_URI, check_redirect_uri
from postroom.auth.oauth.renewal import VaultTokenSource
from postroom.auth.oauth.sign_in import sign_in
from postroom.auth.oauth.tokens import TokenRecord, TokenStore, VaultTokenStore, fingerprint
from postroom.credentials import ResolveContext, Secret, SecretRef, as_secret_ref
from postroom.credentials.refs import format_ref, parse_ref
from postroom.credentials.vault import CredentialVault
from postroom.errors import ConfigError, CredentialError, PostroomWarning
from postroom.extras import require_extra
from postroom.logs import get_logger
from postroom.validation import check_choice, check_known

__all__ = [
    "BrowserSignIn",
    "ImplicitGrantWarning",
    "OAuth2ClientCredentials",
    "OAuth2Implicit",
    "OAuth2PKCE",
    "OAuth2ROPC",
    "RopcWarning",
]

_log = get_logger("postroom.auth")
_SECRET_FIELDS = ("client_id", "tenant_id", "client_secret", "username", "password")
_PLAIN_FIELDS = (
    "provider",
    "azure_cloud",
    "mailbox",
    "redirect_uri",
    "authority",
    "authorize_url",
    "token_url",
    "token_name",
    "ca_file",
    "client_auth",
)


class _OAuthMode:
    """What both OAuth2 modes share: the app registration, the provider and the token's vault entry."""

    kind: str
    grant: str

    def __init__(
        self,
        *,
        client_id: SecretRef | str,
        provider: OAuthProvider = "microsoft365",
        tenant_id: SecretRef | str | None = None,
        client_secret: SecretRef | str | None = None,
        username: SecretRef | str | None = None,
        password: SecretRef | str | None = None,
        mailbox: str | None = None,
        azure_cloud: str | None = None,
        scopes: tuple[str, ...] | list[str] | str = (),
        authority: str | None = None,
        authorize_url: str | None = None,
        token_url: str | None = None,
        token_name: str | None = None,
        ca_file: str | None = None,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        client_auth: ClientAuth | None = None,
    ) -> None:
        check_choice("provider", provider, OAuthProvider)
        if client_auth is not None:
            check_choice("client_auth", client_auth, ClientAuth)
        #: How the client secret goes to the token endpoint (RFC 6749 §2.3.1): ``"basic"`` (HTTP Basic,
        #: which every server must accept; the default for a custom provider) or ``"body"`` (Google's).
        self.client_auth: ClientAuth | None = client_auth
        self.provider: OAuthProvider = provider
        if provider == "microsoft365":  # said when the mode is built, before any connection
            require_extra("microsoft", "OAuth2 with Microsoft 365")
        else:
            require_extra("oauth", "OAuth2 with Gmail" if provider == "gmail" else "OAuth2 with a custom provider")
        self.client_id: SecretRef = as_secret_ref(client_id, "client_id")
        self.tenant_id: SecretRef | None = as_secret_ref(tenant_id, "tenant_id") if tenant_id is not None else None
        self.client_secret: SecretRef | None = (
            as_secret_ref(client_secret, "client_secret") if client_secret is not None else None
        )
        self.username: SecretRef | None = as_secret_ref(username, "username") if username is not None else None
        self.password: SecretRef | None = as_secret_ref(password, "password") if password is not None else None
        self.mailbox = mailbox.strip() if mailbox else None
        self.azure_cloud = azure_cloud
        self.scopes: tuple[str, ...] = tuple(scopes.split()) if isinstance(scopes, str) else tuple(scopes)
        self.authority = authority
        self.authorize_url = authorize_url
        self.token_url = token_url
        self.ca_file = ca_file
        self.redirect_uri = check_redirect_uri(redirect_uri)
        #: What the token is for: a Microsoft service (``"mail"``: IMAP, POP3, SMTP; ``"ews"``), set by the config.
        self.service = "mail"
        if provider == "microsoft365" and tenant_id is None and authority is None:
            raise ConfigError(
                "tenant_id",
                "is required for Microsoft 365",
                hint="give the directory (tenant) ID from the app registration's Overview page "
                "(a tenant-specific endpoint, never /common)",
            )
        # Fail on bad URLs and clouds now, before any network traffic (tenant resolved later).
        self._endpoints_with("tenant")
        self._token_name_given = token_name is not None
        self.token_name = token_name or "oauth:" + fingerprint(self.kind, *self._identity())[:12]
        self._frozen = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(
                f"{type(self).__name__} is a value: make a changed copy with .replace({name}=...) instead"
            )
        object.__setattr__(self, name, value)

    def _options(self) -> dict[str, Any]:
        """The constructor's arguments that build this mode again."""
        options: dict[str, Any] = {name: getattr(self, name) for name in _SECRET_FIELDS}
        options.update({name: getattr(self, name) for name in _PLAIN_FIELDS})
        options["scopes"] = self.scopes
        if not self._token_name_given:
            options.pop("token_name")  # derived again from what changed
        return {name: value for name, value in options.items() if value is not None}

    def replace(self, **changes: Any) -> Any:
        """A copy with ``changes`` applied, checked as the constructor checks them (the mode itself never changes)."""
        check_known(type(self).__name__, changes, set(inspect.signature(_OAuthMode.__init__).parameters) - {"self"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PostroomWarning)  # warned once, when the first one was built
            changed = type(self)(**{**self._options(), **changes})
        return changed._with(service=self.service) if self.service != changed.service else changed

    def _with(self, **attributes: Any) -> Any:
        """A copy with derived attributes set (the service the server binds, the cloud it is in)."""
        bound = copy.copy(self)
        for name, value in attributes.items():
            object.__setattr__(bound, name, value)
        return bound

    # -- configuration ---------------------------------------------------------------------

    def _identity(self) -> tuple[str, ...]:
        refs = (self.client_id, self.tenant_id, self.username)
        return (
            self.provider,
            self.azure_cloud or "global",
            self.authority or "",
            self.mailbox or "",
            *(_describe(r) for r in refs),
        )

    def _endpoints_with(self, tenant: str | None) -> OAuthEndpoints:
        return endpoints_for(
            self.provider,
            tenant_id=tenant,
            azure_cloud=self.azure_cloud or "global",
            authority=self.authority,
            authorize_url=self.authorize_url,
            token_url=self.token_url,
            scopes=self.scopes,
            service=self.service,
        )

    def endpoints(self, context: ResolveContext | None = None) -> OAuthEndpoints:
        """The URLs and scopes this mode uses (resolves the tenant id)."""
        context = context or ResolveContext()
        tenant = self.tenant_id.resolve(context, "tenant_id").reveal() if self.tenant_id else None
        return self._endpoints_with(tenant)

    def for_server(self, provider: str | None, azure_cloud: str, *, service: str = "mail") -> Any:
        """Check the mode against the mail server it logs in to (called by :class:`EmailServer` and :class:`Ews`)."""
        if service != self.service:
            if self.provider == "gmail":
                raise ConfigError(
                    "auth", "a Gmail OAuth2 app cannot sign in to Exchange", hint="use provider='microsoft365'"
                )
            # tokens for another service carry other scopes: they get their own vault entry
            derived = {"token_name": "oauth:" + fingerprint(self.kind, service, *self._identity())[:12]}
            bound = self._with(service=service, **(derived if self.token_name.startswith("oauth:") else {}))
            return bound.for_server(provider, azure_cloud, service=service)
        if provider and provider.startswith("microsoft365") and self.provider == "gmail":
            raise ConfigError("auth", "a Gmail OAuth2 app cannot sign in to a Microsoft 365 server")
        if provider == "gmail" and self.provider == "microsoft365":
            raise ConfigError("auth", "a Microsoft 365 OAuth2 app cannot sign in to Gmail", hint="use provider='gmail'")
        same_provider = provider == "microsoft365" and self.provider == "microsoft365"
        if same_provider and self.azure_cloud is None and azure_cloud != "global":
            return self._with(azure_cloud=azure_cloud)  # the server's cloud, when the mode did not say
        if same_provider and azure_cloud != (self.azure_cloud or "global"):
            raise ConfigError(
                "azure_cloud",
                f"the server is in Azure cloud {azure_cloud!r} but the OAuth2 app signs in to {self.azure_cloud!r}",
                hint="give the same azure_cloud to the server and the auth mode",
            )
        return self

    # -- resolving ---------------------------------------------------------------------------

    def _settings(self, context: ResolveContext) -> ClientSettings:
        secret = self.client_secret.resolve(context, "client_secret") if self.client_secret else None
        return ClientSettings(
            client_id=check_wire_safe(self.client_id.resolve(context, "client_id"), "client_id"),
            client_secret=check_wire_safe(secret, "client_secret") if secret is not None else None,
            ca_file=self.ca_file,
            relogin=self.relogin_hint(context),
            client_auth=self.client_auth or ("body" if self.provider == "gmail" else "basic"),
        )

    def relogin_hint(self, context: ResolveContext | None = None) -> str:
        """How to sign in again, for error hints: the caller's words when it gave some (``sign_in_hint``)."""
        if context is not None and context.sign_in_hint:
            return context.sign_in_hint
        return f"call {type(self).__name__}(...).login()"

    def store(self, context: ResolveContext) -> TokenStore:
        """Where this mode's tokens live: the context's token stores, else the vault."""
        if context.token_stores is not None:
            found: TokenStore = context.token_stores(self.token_name)
            return found
        return VaultTokenStore(context.vault or CredentialVault.default(), self.token_name)

    def resolved(self, context: ResolveContext) -> ResolvedApp:
        """Every reference resolved once (a vault reference is a file read and a decryption)."""
        settings = self._settings(context)
        endpoints = self.endpoints(context)
        username = self.username.resolve(context, "username").reveal() if self.username else None
        tokens_of = fingerprint(
            self.grant,
            endpoints.token_url,
            settings.client_id.reveal(),
            (username or "").lower(),
            self.mailbox or "",
            *(() if self.service == "mail" else (self.service,)),
        )
        return ResolvedApp(endpoints, settings, username, tokens_of)

    def resolve(self, context: ResolveContext) -> TokenLogin:
        app = self.resolved(context)
        password = None
        if self.grant == "password" and self.password is not None and app.username:
            password = (
                check_wire_safe(Secret(app.username, scrub=False), "username"),
                check_wire_safe(self.password.resolve(context, "password"), "password"),
            )
        source = VaultTokenSource(
            client=app.client,
            store=self.store(context),
            fingerprint=app.fingerprint,
            grant=self.grant,
            relogin=self.relogin_hint(context),
            password=password,
        )
        user = self.mailbox or app.username or source.account
        service = MICROSOFT_SERVICES.get(self.service)
        if not user and service is not None and not service.names_user:
            return TokenLogin(username=Secret("", scrub=False), tokens=source)
        if not user:
            raise CredentialError(
                "username: the mailbox address is needed for the SASL login and the provider did not say who signed in",
                hint="give username= (the mailbox address; mailbox= for a shared mailbox)",
            )
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in user):
            # \x01 separates the fields of XOAUTH2/OAUTHBEARER: a control character could forge one
            raise CredentialError("username: contains a control character", hint="give the plain mailbox address")
        return TokenLogin(username=check_wire_safe(Secret(user, scrub=False), "username"), tokens=source)

    # -- profiles and reports ----------------------------------------------------------------

    def describe(self) -> dict[str, str]:
        described = {"mode": self.kind}
        for name in _SECRET_FIELDS:
            ref = getattr(self, name)
            if ref is not None:
                described[name] = _describe(ref)
        for name in _PLAIN_FIELDS:
            value = getattr(self, name)
            if value is not None:
                described[name] = str(value)
        if self.scopes:
            described["scopes"] = " ".join(self.scopes)
        return described

    def to_profile(self) -> dict[str, str]:
        record = self.describe()
        for name in _SECRET_FIELDS:
            ref = getattr(self, name)
            if ref is not None:
                record[name] = format_ref(ref, name)
        return record

    @classmethod
    def from_profile(cls, record: dict[str, str]) -> Any:
        options: dict[str, Any] = {k: record[k] for k in _PLAIN_FIELDS if k in record}
        for name in _SECRET_FIELDS:
            if name in record:
                options[name] = parse_ref(record[name], name)
        if "scopes" in record:
            options["scopes"] = record["scopes"]
        return cls(**options)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.describe().items() if k != "mode")
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.describe() == self.describe()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.describe().items())))


class BrowserSignIn(_OAuthMode):
    """A mode whose tokens come from a user signing in once in a browser (PKCE, implicit)."""

    def authorization_flow(self, app: ResolvedApp) -> AuthorizationFlow:
        """What starts the sign-in and turns the redirect into tokens."""
        return app.client()

    def login(
        self,
        *,
        variables: Mapping[str, str] | None = None,
        vault: CredentialVault | None = None,
        open_browser: Callable[[str], object] | None = None,
        show_url: Callable[[str], object] | None = None,
        timeout: float = 300.0,
    ) -> TokenRecord:
        """Run the consent in a browser and store the tokens in the vault (see :func:`sign_in`)."""
        context = ResolveContext(variables=variables or {}, vault=vault)
        return sign_in(self, context, open_browser=open_browser, show_url=show_url, timeout=timeout)


class OAuth2PKCE(BrowserSignIn):
    """OAuth2 authorization code with PKCE: a user signs in once in a browser, the bot refreshes.

    >>> from postroom import Vault
    >>> OAuth2PKCE(client_id=Vault("app", "client_id"), tenant_id=Vault("app", "tenant_id"),
    ...            username="bot@contoso.com", token_name="oauth:bot")
    OAuth2PKCE(client_id=vault:app/client_id, tenant_id=vault:app/tenant_id, username=insecure:***, \
provider=microsoft365, azure_cloud=global, redirect_uri=http://localhost:8888/Callback, token_name=oauth:bot)
    """

    kind = "oauth2-pkce"
    grant = "authorization_code"

    def __init__(self, *, client_id: SecretRef | str, **options: Any) -> None:
        _check_options(type(self), options)
        super().__init__(client_id=client_id, **options)


class ImplicitGrantWarning(PostroomWarning):
    """OAuth2 implicit puts the access token in the browser's address and cannot refresh it."""


class OAuth2Implicit(BrowserSignIn):
    """OAuth2 implicit grant (legacy): the access token comes back in the redirect's URL fragment.

    Kept for Exchange set-ups whose app registration allows only it. The token is
    exposed to the browser (history, extensions), RFC 9700 says clients SHOULD NOT
    use it, Microsoft advises against it, and there is no refresh token: after
    about an hour the user must sign in again, so an unattended bot stops. Prefer
    :class:`OAuth2PKCE`. The app registration needs "Access tokens (used for
    implicit flows)" turned on and the redirect URI registered.
    """

    kind = "oauth2-implicit"
    grant = "implicit"

    def __init__(self, *, client_id: SecretRef | str, **options: Any) -> None:
        _check_options(type(self), options)
        if options.get("provider") == "gmail":
            raise ConfigError(
                "auth", "Google offers no implicit grant to installed apps", hint="use OAuth2PKCE (it also refreshes)"
            )
        if options.get("client_secret") is not None:
            raise ConfigError(
                "client_secret", "is not used by the implicit grant (a browser app has no secret)", hint="leave it out"
            )
        super().__init__(client_id=client_id, **options)
        warnings.warn(
            "OAuth2 implicit returns the access token in the browser's address and cannot refresh it "
            "(sign in again when it expires, about an hour); RFC 9700 and Microsoft advise against it: "
            "prefer OAuth2PKCE",
            ImplicitGrantWarning,
            stacklevel=2,
        )

    def authorization_flow(self, app: ResolvedApp) -> AuthorizationFlow:
        from postroom.auth.oauth.implicit import ImplicitFlow

        return ImplicitFlow(app.endpoints, app.settings)

    def relogin_hint(self, context: ResolveContext | None = None) -> str:
        hint = super().relogin_hint(context)
        return f"{hint} — implicit tokens cannot be refreshed; OAuth2PKCE refreshes by itself"


class OAuth2ClientCredentials(_OAuthMode):
    """OAuth2 client credentials: app-only access, no user (Microsoft 365 and custom providers).

    ``username`` is the mailbox the app opens; the app needs ``IMAP.AccessAsApp`` /
    ``POP.AccessAsApp`` / ``SMTP.SendAsApp`` with admin consent, a service principal
    in Exchange Online and FullAccess on the mailbox.
    """

    kind = "oauth2-client-credentials"
    grant = "client_credentials"

    def __init__(self, *, client_id: SecretRef | str, **options: Any) -> None:
        _check_options(type(self), options)
        if options.get("provider") == "gmail":
            raise ConfigError(
                "auth",
                "Gmail has no OAuth2 client-credentials grant",
                hint="use OAuth2PKCE: a user signs in once and the bot refreshes its token from then on "
                "(postroom has no Google service accounts; see docs/gmail.md)",
            )
        if options.get("client_secret") is None:
            raise ConfigError(
                "client_secret", "is required for client credentials", hint="give the app's client secret (vault:)"
            )
        options.pop("redirect_uri", None)
        super().__init__(client_id=client_id, **options)

    def for_server(self, provider: str | None, azure_cloud: str, *, service: str = "mail") -> Any:
        """As for every mode; and where the login names a user (IMAP, POP, SMTP, EWS), an app has no user
        of its own: the mailbox it opens must be given (Graph names it in the Outlook settings instead)."""
        bound = super().for_server(provider, azure_cloud, service=service)
        found = MICROSOFT_SERVICES.get(service)
        if (found is None or found.names_user) and self.username is None and self.mailbox is None:
            raise ConfigError(
                "username",
                "is required for client credentials: the mailbox address the app opens",
                hint="give the mailbox's primary SMTP address",
            )
        return bound

    def relogin_hint(self, context: ResolveContext | None = None) -> str:
        return "check the client secret and the app's permissions"


class RopcWarning(PostroomWarning):
    """OAuth2 ROPC sends the user's password to the authorization server: no MFA, deprecated by Microsoft."""


class OAuth2ROPC(_OAuthMode):
    """OAuth2 resource owner password credentials (legacy): username and password for a token.

    Kept for Exchange set-ups that still rely on it. RFC 9700 says it MUST NOT be
    used, Microsoft is retiring it for public clients, it cannot do MFA and it
    fails for federated users: prefer :class:`OAuth2PKCE` or :class:`OAuth2ClientCredentials`.
    The app registration needs "Allow public client flows".
    """

    kind = "oauth2-ropc"
    grant = "password"

    def __init__(self, *, client_id: SecretRef | str, **options: Any) -> None:
        _check_options(type(self), options)
        if options.get("provider") == "gmail":
            raise ConfigError("auth", "Google has no OAuth2 password grant", hint="use OAuth2PKCE")
        for name in ("username", "password"):
            if options.get(name) is None:
                raise ConfigError(name, "is required for OAuth2 ROPC", hint=f"give {name}= (vault: or a variable)")
        options.pop("redirect_uri", None)
        super().__init__(client_id=client_id, **options)
        warnings.warn(
            "OAuth2 ROPC sends the password to the authorization server, cannot do MFA and is deprecated "
            "(RFC 9700; Microsoft is retiring it): prefer OAuth2PKCE or client credentials",
            RopcWarning,
            stacklevel=2,
        )

    def relogin_hint(self, context: ResolveContext | None = None) -> str:
        return "check the username and password (ROPC cannot pass MFA or federated sign-in)"


def _check_options(mode: type, options: Mapping[str, Any]) -> None:
    """A misspelt setting is a ConfigError naming it (a keyword the mode does not take), not a TypeError."""
    check_known(mode.__name__, options, set(inspect.signature(_OAuthMode.__init__).parameters) - {"self"})


def _describe(ref: SecretRef | None) -> str:
    return ref.describe() if ref is not None else ""
