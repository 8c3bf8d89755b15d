"""Single sign-on in Chromium against a real OpenID provider (oidc-provider, devtools/oidc) on
loopback: sign-in, the role from the groups claim and its refresh, and each refusal coming back to
the sign-in page saying why, with nobody signed in."""
import json
import re
from urllib.parse import urljoin

import pytest
import requests
from playwright.sync_api import expect

from devtools.localservers import OidcProvider
from tests.web_helpers import LiveApp, live_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]

BUTTON = "Sign in with Keycloak"
ACCOUNTS = {
    "alice": {"email": "alice@example.com", "email_verified": True, "groups": ["ops", "staff"]},
    "vera": {"email": "vera@example.com", "email_verified": True, "groups": ["staff"]},
    "mallory": {"email": "mallory@elsewhere.test", "email_verified": True, "groups": ["backup-admins"]},
    "una": {"email": "una@example.com", "email_verified": False, "groups": ["backup-admins"]},
}


@pytest.fixture
def start_sso(tmp_path, catalog_url):
    """start_sso(clock_skew=0, id_token_ttl=3600, **settings): a provider and the app (gunicorn and
    a worker) signing in through it, groups backup-admins → admin and ops → operator, example.com only;
    `settings` may name the provider's issuer as {issuer}."""
    started = []

    def start(clock_skew: int = 0, id_token_ttl: int = 3600, **settings) -> tuple[OidcProvider, LiveApp]:
        provider = OidcProvider(tmp_path / f"oidc{len(started)}", [], ACCOUNTS, id_token_ttl, clock_skew)
        settings = {**provider.settings(), **{name: value.format(issuer=provider.issuer)
                                              for name, value in settings.items()}}
        app = LiveApp(live_env(tmp_path, catalog_url, OIDC_PROVIDER_NAME=BUTTON,
                               OIDC_ROLE_MAP="backup-admins=admin,ops=operator", OIDC_ALLOWED_DOMAINS="example.com",
                               **settings), tmp_path)
        provider.redirect_uris.append(f"{app.url}/login/oidc/callback")
        started.append((provider.start(), app))
        app.start()
        return provider, app
    yield start
    for provider, app in started:
        app.stop()
        provider.stop()


def sign_in_at_provider(page, app: LiveApp, login: str):
    """Press the SSO button and sign in as `login` at the provider; the callback's response."""
    page.goto(app.url + "/login")
    page.get_by_role("link", name=BUTTON).click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any password")
    with page.expect_response(lambda response: "/login/oidc/callback" in response.url) as callback:
        page.get_by_role("button", name="Sign-in").click()
    return callback.value


def users_of(app: LiveApp) -> dict[str, dict]:
    return {user["email"]: user for user in json.loads(app.flask("users", "list", "--json"))}


def last_event(app: LiveApp) -> dict:
    return json.loads(app.flask("audit", "list", "--json", "--limit", "1"))[0]


def expect_signed_out(page, app: LiveApp):
    page.goto(app.url + "/")
    expect(page).to_have_url(app.url + "/login?next=/")


def test_a_first_sign_in_makes_the_user_with_the_mapped_role_and_the_next_refreshes_it(start_sso, page, screenshot):
    provider, app = start_sso()
    page.goto(app.url + "/")
    expect(page).to_have_url(app.url + "/login?next=/")
    expect(page.get_by_label("Password")).to_be_visible()  # LOCAL_LOGIN is on by default
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    screenshot("login-sso")

    page.get_by_role("link", name=BUTTON).click()
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    expect(page).to_have_url(app.url + "/")  # back where the sign-in was asked for
    expect(page.locator(".signout")).to_contain_text("alice@example.com")
    alice = users_of(app)["alice@example.com"]
    assert (alice["role"], alice["disabled"]) == ("operator", False) and alice["last_sign_in_at"]
    event = last_event(app)
    assert (event["actor"], event["action"], event["subject"], event["detail"]) == \
        ("alice@example.com", "sign-in", "alice@example.com", "ok")
    page.goto(app.url + "/settings")
    expect(page.get_by_text("This needs the admin role; you are an operator")).to_be_visible()

    # Her groups change at the provider: her next sign-in brings the new role.
    provider.set_accounts({**ACCOUNTS, "alice": {**ACCOUNTS["alice"], "groups": ["backup-admins"]}})
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("link", name=BUTTON).click()  # still signed in at the provider: straight back
    expect(page.locator(".signout")).to_contain_text("alice@example.com")
    assert users_of(app)["alice@example.com"]["role"] == "admin"
    page.goto(app.url + "/settings")
    expect(page.locator("h1")).to_have_text("Notifications")  # the admins' settings page


@pytest.mark.parametrize(("login", "status", "message"), [
    ("mallory", 403, "Addresses at elsewhere.test may not sign in here"),
    ("vera", 403, "No role for you here: none of your groups (staff) is in OIDC_ROLE_MAP, and there is no "
                  "default role. Ask an admin."),
    ("una", 403, "Your email address una@example.com is not verified at the provider"),
])
def test_a_refused_person_comes_back_to_the_sign_in_page_saying_why(start_sso, page, login, status, message):
    _provider, app = start_sso()
    callback = sign_in_at_provider(page, app, login)
    assert callback.status == status
    expect(page.get_by_role("alert")).to_have_text(message)
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    expect_signed_out(page, app)
    assert set(users_of(app)) == {"admin@example.com"}  # nobody was made
    event = last_event(app)
    assert (event["actor"], event["action"], event["detail"]) == ("anonymous", "sign-in-failed", f"refused: {message}")


def attackers_callback(app: LiveApp, login: str) -> str:
    """Someone's own sign-in (by plain HTTP, no browser) stopped where the provider sends it back:
    the callback URL, with a good code and state, that they could get another browser to open."""
    client = requests.Session()
    form = client.get(app.url + "/login/oidc", timeout=10)
    action = re.search(r'<form[^>]*action="([^"]+)"', form.text).group(1)
    answer = client.post(urljoin(form.url, action), data={"prompt": "login", "login": login, "password": "x"},
                         allow_redirects=False, timeout=10)
    while not answer.headers["Location"].startswith(app.url):
        answer = client.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False, timeout=10)
    return answer.headers["Location"]


def test_a_callback_that_this_browser_did_not_start_or_with_a_forged_state_is_refused(start_sso, page):
    _provider, app = start_sso()
    callback_url = attackers_callback(app, "alice")
    assert callback_url.startswith(app.url + "/login/oidc/callback?code=")
    refusal = "This sign-in was not started in this browser (its state does not match); start again"

    # A browser with no sign-in under way, and one waiting at the provider's sign-in page: both
    # refuse the other's callback, and a state changed by hand.
    for started in (False, True):
        if started:
            page.goto(app.url + "/login")
            page.get_by_role("link", name=BUTTON).click()
            expect(page.locator("input[name=login]")).to_be_visible()
        for url in (callback_url, re.sub(r"state=[^&]+", "state=forged", callback_url)):
            answer = page.goto(url)
            assert answer.status == 400
            expect(page.get_by_role("alert")).to_have_text(refusal)
            expect_signed_out(page, app)
    assert set(users_of(app)) == {"admin@example.com"}
    event = last_event(app)
    assert (event["actor"], event["action"], event["detail"]) == ("anonymous", "sign-in-failed", f"refused: {refusal}")


def test_an_expired_id_token_is_refused(start_sso, page):
    # The provider's clock is ten minutes slow and its ID tokens live a minute: each one it signs
    # has expired nine minutes before it reaches us (past Authlib's two minutes of leeway).
    _provider, app = start_sso(clock_skew=-600, id_token_ttl=60)
    callback = sign_in_at_provider(page, app, "alice")
    assert callback.status == 401
    expect(page.get_by_role("alert")).to_have_text("The provider's ID token has expired (is its clock, or ours, "
                                                   "wrong?)")
    expect_signed_out(page, app)
    assert set(users_of(app)) == {"admin@example.com"}


def test_an_id_token_naming_another_issuer_is_refused(start_sso, page):
    # The app expects the issuer with a trailing slash; the provider's tokens name it without one.
    _provider, app = start_sso(OIDC_ISSUER="{issuer}/")
    callback = sign_in_at_provider(page, app, "alice")
    assert callback.status == 401
    expect(page.get_by_role("alert")).to_have_text("The provider's ID token did not verify (invalid_claim: "
                                                   "Invalid claim: 'iss')")
    expect_signed_out(page, app)
    assert set(users_of(app)) == {"admin@example.com"}


def test_with_local_login_off_only_single_sign_on_is_offered(start_sso, page, screenshot):
    _provider, app = start_sso(LOCAL_LOGIN="false")
    page.goto(app.url + "/login")
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    expect(page.get_by_label("Password")).to_have_count(0)
    expect(page.get_by_label("Email")).to_have_count(0)

    sign_in_at_provider(page, app, "alice")
    expect(page.locator(".signout")).to_contain_text("alice@example.com")
