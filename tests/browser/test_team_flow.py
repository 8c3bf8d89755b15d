"""An admin in Chromium adds a teammate on the users page; the teammate signs in with the password
shown once, makes an API token of a lower role on their tokens page, and it works as that role;
disabled, they are signed out at the next click and their token stops."""
import json
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from tests.browser.test_phone_and_progress import PHONE, fits, wide
from tests.web_helpers import EMAIL, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def sign_in(page, url: str, email: str, password: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def api_status(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_teammate_is_added_makes_a_token_and_is_disabled(live_app, page, browser, screenshot):
    live = live_app
    backup = json.loads(live.flask("backup", "create", "--json"))
    sign_in(page, live.url, EMAIL, PASSWORD)
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Email").fill("ops@example.com")
    page.get_by_label("Role", exact=True).select_option("operator")
    page.get_by_role("button", name="Add user").click()
    expect(page.get_by_role("status")).to_contain_text("Created ops@example.com (operator)")
    password = page.locator('[data-field="secret"]').inner_text()
    row = page.locator('tr[data-email="ops@example.com"]')
    expect(row.locator('[data-field="state"]')).to_have_text("enabled")
    screenshot("users-page")

    teammate = browser.new_context(viewport=PHONE).new_page()
    sign_in(teammate, live.url, "ops@example.com", password)
    expect(teammate.locator("header")).not_to_contain_text("Users")
    teammate.get_by_role("link", name="ops@example.com").click()
    expect(teammate.locator('[data-field="role"]')).to_have_text("operator")
    teammate.get_by_role("link", name="Your API tokens").click()
    teammate.get_by_label("Name").fill("nightly report")
    teammate.get_by_label("Role").select_option("viewer")
    teammate.get_by_label("Expires in days").fill("30")
    teammate.get_by_role("button", name="Create token").click()
    token = teammate.locator('[data-field="secret"]').inner_text()
    assert token.startswith("bk_")
    assert fits(teammate), wide(teammate)
    teammate.set_viewport_size({"width": 1280, "height": 900})
    teammate.screenshot(path=str(screenshot("tokens-page").parent / "tokens-page.png"), full_page=True)

    assert api_status(f"{live.url}/api/backups/{backup['id']}", token) == 200
    assert api_status(f"{live.url}/api/backups/{backup['id']}/download", token) == 403, "the token is a viewer"
    teammate.goto(live.url + "/account/tokens")
    expect(teammate.locator('tr[data-token-id] td[data-label="Last used"]')).not_to_have_text("never")
    expect(teammate.locator("body")).not_to_contain_text(token)

    row.get_by_role("button", name="Disable").click()
    expect(page.get_by_role("status")).to_contain_text("Disabled ops@example.com")
    expect(row.locator('[data-field="state"]')).to_have_text("disabled")
    teammate.goto(live.url + "/dashboard")
    expect(teammate).to_have_url(re.compile(r"/login\?next="))
    assert api_status(f"{live.url}/api/backups/{backup['id']}", token) == 401
    teammate.context.close()
