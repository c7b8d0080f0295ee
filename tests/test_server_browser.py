"""postroom server in a real browser (Debian's Chromium, driven by Selenium through chromium-driver).

An administrator signs in with the keyboard, creates a Microsoft 365 connection with the form, copies the
callback URL and signs in at the identity provider for a shared token; a user signs in for a user-specific
token under My connections and sees Active; a runner then gets the tokens and a bot loops over Dovecot.
The identity provider is the test authorization server, playing Entra ID (its form_post callback comes
back cross-site, without the session cookie: the relay page carries it on, as in a real browser).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import postroom
from tests.server_flows import ADMIN, ADMIN_PASSWORD, Team, managed_imap, runner_key
from tests.servers.dovecot import Dovecot
from tests.servers.oauth import SERVER_CLIENT, SERVER_SECRET, TENANT, USER_PASSWORD, AuthorizationServerUnderTest
from tests.servers.postroom_server import ServerUnderTest
from tests.test_server import SIGNER

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as until  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    if not Path(CHROMEDRIVER).exists():
        pytest.fail(
            "chromium-driver is not installed: scripts/test installs it (apt-get install chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--ignore-certificate-errors",  # the test identity provider's certificate comes from a CA made for the run
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1200,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: object, condition: object, seconds: float = 30) -> object:
    return WebDriverWait(driver, seconds).until(condition)  # type: ignore[arg-type,type-var]


def _sign_in_with_keyboard(driver: object, base: str, name: str) -> None:
    driver.get(base + "/sign-in")  # type: ignore[attr-defined]
    field = driver.switch_to.active_element  # type: ignore[attr-defined]  # the name field has the focus
    field.send_keys(name, Keys.TAB, ADMIN_PASSWORD, Keys.ENTER)
    _wait(driver, until.presence_of_element_located((By.XPATH, f"//button[contains(., 'Sign out {name}')]")))


def _at_the_provider(driver: object, user: str) -> None:
    """The test identity provider's login form (Entra's, played)."""
    _wait(driver, until.presence_of_element_located((By.NAME, "username")))
    driver.find_element(By.NAME, "username").send_keys(user)  # type: ignore[attr-defined]
    driver.find_element(By.NAME, "password").send_keys(USER_PASSWORD, Keys.ENTER)  # type: ignore[attr-defined]


def test_an_admin_and_a_user_sign_in_in_a_real_browser_and_a_bot_uses_their_tokens(
    browser: object,
    tmp_path: Path,
    authorization_server: AuthorizationServerUnderTest,
    dovecot: Dovecot,
) -> None:
    assert dovecot.certs is not None
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(authorization_server.ca_file).read_bytes() + Path(dovecot.certs.ca_file).read_bytes())
    server = ServerUnderTest(home=tmp_path / "home", ca_file=bundle)
    try:
        team = Team.start(server)
        _run(browser, team, authorization_server, dovecot)
    finally:
        server.stop()


def _run(driver: object, team: Team, oauth: AuthorizationServerUnderTest, dovecot: Dovecot) -> None:
    base = team.server.url
    d: Any = driver  # selenium's WebDriver
    _sign_in_with_keyboard(d, base, ADMIN)
    assert d.current_url == base + "/connections"
    d.find_element(By.LINK_TEXT, "Create connection").click()
    d.find_element(By.ID, "name").send_keys("contoso-mail")
    Select(d.find_element(By.ID, "provider")).select_by_visible_text("Microsoft 365")
    Select(d.find_element(By.ID, "grant")).select_by_visible_text("Authorization code with PKCE")
    Select(d.find_element(By.ID, "token_type")).select_by_visible_text("Shared")
    d.find_element(By.ID, "client_id").send_keys(SERVER_CLIENT)
    d.find_element(By.ID, "client_secret").send_keys(SERVER_SECRET)
    d.find_element(By.ID, "tenant").send_keys(TENANT)
    d.find_element(By.ID, "authority").send_keys(oauth.authority)
    d.find_element(By.XPATH, "//label[contains(., 'Bot runner')]/input").click()
    d.find_element(By.XPATH, "//button[. = 'Save']").click()
    _wait(d, until.presence_of_element_located((By.ID, "callback-url")))
    callback = d.find_element(By.ID, "callback-url").get_attribute("value")
    assert callback == base + "/oauth/callback"  # what the admin registers in the app registration
    copy = d.find_element(By.XPATH, "//button[@data-copy='callback-url']")
    copy.click()
    _wait(d, lambda _d: copy.text == "Copied")
    assert d.find_element(By.ID, "shared-status").text == "Needs sign-in"
    d.find_element(By.ID, "sign-in").click()
    _at_the_provider(d, SIGNER)
    _wait(d, until.presence_of_element_located((By.ID, "signed-in")))
    assert d.find_element(By.ID, "signed-in").text == f"Signed in as {SIGNER}."
    assert d.find_element(By.ID, "shared-status").text == "Active"

    # a user-specific connection, and a user who signs in for it under My connections
    d.get(base + "/connections/new")
    d.find_element(By.ID, "name").send_keys("personal")
    Select(d.find_element(By.ID, "token_type")).select_by_visible_text("User-specific")
    d.find_element(By.ID, "client_id").send_keys(SERVER_CLIENT)
    d.find_element(By.ID, "client_secret").send_keys(SERVER_SECRET)
    d.find_element(By.ID, "tenant").send_keys(TENANT)
    d.find_element(By.ID, "authority").send_keys(oauth.authority)
    for role in ("Bot runner", "Bot user"):
        d.find_element(By.XPATH, f"//label[contains(., '{role}')]/input").click()
    d.find_element(By.XPATH, "//button[. = 'Save']").click()
    _wait(d, until.presence_of_element_located((By.ID, "callback-url")))
    team.server.cli("create-user", "bob", "--role", "Bot user", "--password-env", "PW", env={"PW": ADMIN_PASSWORD})
    d.delete_all_cookies()
    _sign_in_with_keyboard(d, base, "bob")
    d.find_element(By.LINK_TEXT, "My connections").click()
    assert d.find_element(By.ID, "status-personal").text == "Needs sign-in"
    d.find_element(By.ID, "login-personal").click()
    _at_the_provider(d, "bob@example.test")
    _wait(d, until.presence_of_element_located((By.ID, "signed-in")))
    assert d.find_element(By.ID, "status-personal").text == "Active"

    # a runner gets the tokens; a bot loops over Dovecot with each
    dovecot.add_user(SIGNER)
    dovecot.add_user("bob@example.test")
    subject = f"for the bot {team.server.port}"
    dovecot.deliver("bob@example.test", f"From: a@example.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    key = runner_key(team.server)
    with managed_imap(dovecot, team.server, key) as shared:
        assert shared.resolve_login().username.reveal() == SIGNER
        list(postroom.messages(shared))
    with managed_imap(dovecot, team.server, key, "personal", token="user", user="bob") as personal:
        assert [mail.subject for mail in postroom.messages(personal)] == [subject]
