"""Two-factor sign-in in Chromium: a user sets it up on their account page (the key read from the
page, codes computed as an authenticator app would), signs out, signs in with password and code,
then on a phone with a recovery code. Both pages fit a 390 px phone."""
import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.test_phone_and_progress import PHONE, fits, wide
from tests.web_helpers import EMAIL, PASSWORD, LiveApp, live_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def web(tmp_path, catalog_url):
    """gunicorn (and a worker) on the test's catalog: no database to back up is needed here."""
    app = LiveApp(live_env(tmp_path, catalog_url), tmp_path).start()
    yield app
    app.stop()


def password_step(page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_set_up_then_sign_in_with_a_code_and_with_a_recovery_code(web, page, browser, screenshot):
    password_step(page, web.url)
    page.get_by_role("link", name=EMAIL).click()
    page.get_by_role("link", name="Set up two-factor sign-in").click()
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    expect(page.get_by_role("img", name="QR code of your two-factor secret")).to_be_visible()
    screenshot("two-factor-enrol")
    page.set_viewport_size(PHONE)
    assert fits(page), wide(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    totp = pyotp.TOTP(page.locator('[data-field="totp-secret"]').inner_text().replace(" ", ""))
    page.get_by_label("Code", exact=True).fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("status")).to_contain_text("Two-factor sign-in is on")
    codes = page.locator('[data-field="recovery-codes"] li code').all_inner_texts()
    assert len(codes) == 10
    expect(page.locator('[data-field="two-factor-state"]')).to_contain_text("10 unused recovery codes left")
    sign_out(page)

    password_step(page, web.url)
    expect(page.get_by_role("heading", name="Enter the code from your authenticator app")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
    screenshot("two-factor-prompt")
    page.get_by_label("Code").fill(totp.at(time.time() + 30))  # the next step's: the one used to turn it on is spent
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    sign_out(page)

    phone = browser.new_context(viewport=PHONE).new_page()
    try:
        password_step(phone, web.url)
        expect(phone.get_by_role("heading", name="Enter the code from your authenticator app")).to_be_visible()
        assert fits(phone), wide(phone)
        phone.get_by_label("Code").fill("not-a-code")
        phone.get_by_role("button", name="Sign in").click()
        expect(phone.get_by_role("alert")).to_contain_text("Wrong code")
        phone.get_by_label("Code").fill(codes[0])
        phone.get_by_role("button", name="Sign in").click()
        expect(phone.get_by_role("button", name="Sign out")).to_be_visible()
        phone.goto(web.url + "/account/two-factor")
        expect(phone.locator('[data-field="two-factor-state"]')).to_contain_text("9 unused recovery codes left")
        assert fits(phone), wide(phone)
    finally:
        phone.context.close()

