"""A person at postroom server's web UI, played over HTTP: signs in, follows links, posts forms with their CSRF
token, and signs in to identity providers (the test authorization server's login form)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import urljoin

import requests

from tests.servers.oauth import USER_PASSWORD, AuthorizationServerUnderTest

__all__ = ["WebUser"]

_CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class WebUser:
    base_url: str
    web: requests.Session = field(default_factory=requests.Session)
    #: Every page and answer this user saw (the canary test reads them all).
    seen: list[str] = field(default_factory=list)

    def get(self, path: str, **options: object) -> requests.Response:
        reply = self.web.get(urljoin(self.base_url, path), timeout=30, **options)  # type: ignore[arg-type]
        self.seen.append(reply.text)
        return reply

    def csrf_of(self, path: str) -> str:
        found = _CSRF.search(self.get(path).text)
        assert found is not None, f"no CSRF token on {path}"
        return unescape(found.group(1))

    def post(
        self,
        path: str,
        data: Mapping[str, str | list[str]] | None = None,
        *,
        from_page: str | None = None,
        follow: bool = True,
    ) -> requests.Response:
        """Post a form as the page ``from_page`` (default: ``path``) carries it, with its CSRF token."""
        form = {"csrf": self.csrf_of(from_page or path), **(data or {})}
        reply = self.web.post(urljoin(self.base_url, path), data=form, timeout=60, allow_redirects=follow)
        self.seen.append(reply.text)
        return reply

    def sign_in(self, name: str, password: str) -> requests.Response:
        reply = self.post("/sign-in", {"name": name, "password": password})
        assert reply.ok, reply.text
        return reply

    def sign_in_at_provider(
        self, start: requests.Response, oauth: AuthorizationServerUnderTest, user: str
    ) -> requests.Response:
        """``start`` is the answer to a sign-in button (a redirect to the provider): log in there as ``user``
        and follow the provider's way back to the callback, as a browser does."""
        assert start.status_code == 303, (start.status_code, start.text)
        ca = str(oauth.ca_file)
        page = self.web.get(start.headers["Location"], timeout=30, verify=ca)
        page.raise_for_status()
        action = unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
        form = {"username": user, "password": USER_PASSWORD, "decision": "accept"}
        reply = self.web.post(urljoin(page.url, action), data=form, allow_redirects=False, timeout=30, verify=ca)
        location = reply.headers.get("Location")
        if location:  # the code in the redirect's query
            back = self.web.get(location, timeout=60)
        else:  # response_mode=form_post: the page posts the code to the callback
            found = re.search(r'<form method="post" action="([^"]+)">', reply.text)
            assert found is not None, reply.text
            fields = {unescape(k): unescape(v) for k, v in re.findall(r'name="([^"]*)" value="([^"]*)"', reply.text)}
            back = self.web.post(unescape(found.group(1)), data=fields, timeout=60)
        self.seen.append(back.text)
        return back
