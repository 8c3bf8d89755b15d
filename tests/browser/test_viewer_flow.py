"""A viewer in Chromium reads the dashboard and a backup's page without a button it may not use (no
Download, Verify, Restore or Delete, no empty action bar), on a desktop screen and a 390 px phone (where
its other pages fit too), and opening a restore's URL directly gets the 403 page naming the role it needs."""
import json

import pytest
from playwright.sync_api import expect

from tests.browser.test_phone_and_progress import PHONE, fits
from tests.web_helpers import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]

VIEWER = "viewer@example.com"


def test_a_viewer_sees_no_button_it_may_not_use_and_a_direct_url_is_refused(live_app, page, screenshot, source_db):
    live_app.flask("users", "create", VIEWER, "--role", "viewer", "--password-stdin", input=PASSWORD + "\n")
    backup = json.loads(live_app.flask("backup", "create", "--json"))

    page.goto(live_app.url + "/login")
    page.get_by_label("Email").fill(VIEWER)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator(f'td[data-target="{source_db}"]')).to_be_visible()

    page.goto(f"{live_app.url}/backups/{backup['id']}")
    expect(page.get_by_role("heading", name=backup["filename"])).to_be_visible()
    main = page.locator("main")
    for name in ("Download", "Verify now", "Restore…", "Delete…"):
        expect(main.get_by_role("link", name=name)).to_have_count(0)
        expect(main.get_by_role("button", name=name)).to_have_count(0)
    expect(main.locator(".title-row .actions")).to_have_count(0)
    expect(main.get_by_text("An operator or an admin can verify it")).to_be_visible()
    screenshot("viewer-backup")
    page.set_viewport_size(PHONE)
    assert fits(page), "the backup's page fits a phone"
    screenshot("viewer-backup-phone")
    for path in ("/dashboard", "/", "/targets/", f"/targets/{source_db}/pitr", "/jobs/", "/restores/"):
        page.goto(live_app.url + path)
        assert fits(page), f"{path} fits a phone"

    response = page.goto(f"{live_app.url}/backups/{backup['id']}/restore")
    assert response.status == 403
    expect(page.get_by_role("heading", name="403 · Not allowed")).to_be_visible()
    expect(page.locator("main")).to_contain_text("This needs the admin role; you are a viewer. Ask an admin if you "
                                                 "need it.")
    expect(page.get_by_role("button", name="Restore")).to_have_count(0)
