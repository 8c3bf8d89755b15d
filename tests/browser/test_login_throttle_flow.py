"""In Chromium against gunicorn: an address that guessed at made-up accounts is told to wait, and the
admin, who signed in from it before, still signs in from it."""
import re

import pytest
from playwright.sync_api import expect

from backup_app import create_app
from backup_app.extensions import db
from backup_app.models import LoginFailure
from tests.web_helpers import EMAIL, PASSWORD, LiveApp, live_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def web_only(tmp_path, catalog_url):
    """gunicorn on the test's catalog with the admin user; no worker, no target."""
    live = LiveApp(live_env(tmp_path, catalog_url), tmp_path)
    live.prepare()
    yield live.start_web()
    live.stop()


def sign_in(page, email: str, password: str) -> None:
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_slowed_address_is_told_how_long_to_wait_and_a_user_known_there_signs_in(
        web_only, page, screenshot, catalog_url, tmp_path):
    url = web_only.url
    page.goto(url + "/login")
    sign_in(page, EMAIL, PASSWORD)
    expect(page).to_have_url(url + "/dashboard")
    page.get_by_role("button", name="Sign out").click()

    for n in range(5):
        sign_in(page, f"nobody{n}@example.com", "guess-password")
        expect(page.get_by_role("alert")).to_have_text("Wrong email or password")
    app = create_app({"SQLALCHEMY_DATABASE_URI": catalog_url, "BACKUP_DIR": str(tmp_path / "backups")})
    with app.app_context():  # as after a long run of guesses: the wait is at its longest, 5 minutes
        db.session.get(LoginFailure, "address:127.0.0.1").count = 20
        db.session.commit()
        db.engine.dispose()

    sign_in(page, "nobody9@example.com", "guess-password")
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^Too many failed sign-ins from your address; try again in (5 min|4 min \d+ s)$"))
    screenshot("login-throttled")

    sign_in(page, EMAIL, PASSWORD)
    expect(page).to_have_url(url + "/dashboard")
