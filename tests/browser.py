"""The user's browser, played by the test: follows the authorize URL, fills in the login form of
the test authorization server, and follows the redirect to postroom's loopback listener.

For the implicit grant the redirect's answer is in the URL fragment, which a browser keeps to
itself: the listener serves a relay page, and the test does what its script does (posts the
fragment's fields back as a form). No JavaScript engine runs here; the test checks that the page
is the relay page whose script hash the Content-Security-Policy allows."""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from dataclasses import dataclass, field
from html import unescape
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from tests.servers.oauth import USER_PASSWORD, AuthorizationServerUnderTest


@dataclass
class Browser:
    server: AuthorizationServerUnderTest
    username: str
    password: str = USER_PASSWORD
    decision: str = "accept"
    #: Where the authorization server sent the browser, and what the listener answered.
    landed_on: str | None = None
    listener_status: int | None = None
    errors: list[BaseException] = field(default_factory=list)
    #: The listener's answer to the implicit grant's redirect (the relay page).
    relay_page: requests.Response | None = None
    _thread: threading.Thread | None = None

    def __call__(self, url: str) -> bool:
        """Called by postroom instead of opening a real browser; the sign-in runs in the background."""
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        return True

    def _run(self, url: str) -> None:
        try:
            with requests.Session() as web:
                ca = str(self.server.ca_file)  # per request: REQUESTS_CA_BUNDLE would override session.verify
                page = web.get(url, timeout=10, verify=ca)
                page.raise_for_status()
                action = unescape(re.search(r'<form method="post" action="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
                form = {"username": self.username, "password": self.password, "decision": self.decision}
                reply = web.post(urljoin(page.url, action), data=form, allow_redirects=False, timeout=10, verify=ca)
                self.landed_on = reply.headers.get("Location")
                if self.landed_on is not None and "#" in self.landed_on:  # implicit: the answer in the fragment
                    back = self._relay(web, self.landed_on)
                elif self.landed_on is not None:  # the code in the redirect's query
                    back = web.get(self.landed_on, allow_redirects=False, timeout=10, verify=ca)
                else:  # response_mode=form_post: the page posts the code to the redirect URI
                    found = re.search(r'<form method="post" action="([^"]+)">', reply.text)
                    if found is None:
                        return
                    self.landed_on = unescape(found.group(1))
                    fields = {
                        unescape(k): unescape(v) for k, v in re.findall(r'name="([^"]*)" value="([^"]*)"', reply.text)
                    }
                    back = web.post(self.landed_on, data=fields, allow_redirects=False, timeout=10, verify=ca)
                self.listener_status = back.status_code
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def _relay(self, web: requests.Session, location: str) -> requests.Response:
        """What the browser and the relay page's script do with a redirect whose answer is in the fragment."""
        address, _, fragment = location.partition("#")
        page = web.get(address, allow_redirects=False, timeout=10)  # the fragment stays in the browser
        self.relay_page = page
        script = re.search(r"<script>(.*?)</script>", page.text, re.S)
        policy = page.headers.get("Content-Security-Policy", "")
        digest = base64.b64encode(hashlib.sha256(script.group(1).encode()).digest()).decode() if script else ""
        if page.status_code != 200 or f"'sha256-{digest}'" not in policy or "form.submit()" not in page.text:
            raise AssertionError(f"no relay page with an allowed script at {address}: {page.status_code} {policy!r}")
        fields = dict(parse_qsl(fragment, keep_blank_values=True))
        return web.post(urljoin(address, urlsplit(address).path), data=fields, allow_redirects=False, timeout=10)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=20)
