"""An admin in Chromium: sign in, back up, watch the job, download, restore, delete."""
import hashlib
import re

import pytest
from playwright.sync_api import expect

from tests.helpers import count_rows
from tests.web_helpers import EMAIL, PASSWORD, TableLock

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_sign_in_back_up_watch_download_restore_delete(live_app, page, screenshot, pg_cluster, source_db,
                                                       tmp_path):
    url = live_app.url

    page.goto(url + "/")
    expect(page).to_have_url(url + "/login?next=/")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong email or password")
    screenshot("login")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(url + "/")
    expect(page.locator("p.empty")).to_contain_text("No backups yet")

    # Create: pg_dump waits on a lock the test holds, so the job is seen running, then done.
    page.get_by_role("link", name="New backup").first.click()
    expect(page.get_by_label("Database")).to_have_value(source_db)
    screenshot("create")
    lock = TableLock(pg_cluster, source_db, "orders")
    try:
        page.get_by_role("button", name="Back up now").click()
        expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
        page.evaluate("window.sameDocument = true")
        row = page.locator("tr.highlight")
        expect(row.locator('[data-field="status"]')).to_have_text("running")
        expect(row.locator('[data-field="phase"]')).to_have_text("dumping")
        screenshot("jobs-running")
    finally:
        lock.release()
    expect(row.locator('[data-field="status"]')).to_have_text("completed", timeout=30_000)
    expect(row.locator('[data-field="result"]')).to_contain_text("copies: local present, s3 present")
    assert page.evaluate("window.sameDocument") is True, "updated by the page's script, not a reload"
    assert row.locator('[data-field="bytes_done"]').inner_text().endswith("KB")
    screenshot("jobs-completed")

    # The backup: badges on the list and on the detail page.
    page.get_by_role("link", name="Backups", exact=True).click()
    listed = page.locator("table.backups tbody tr")
    expect(listed).to_have_count(1)
    expect(listed.locator(".copies")).to_have_text("Local: present MinIO: present")
    screenshot("backups-list")
    page.get_by_role("link", name="Dashboard", exact=True).click()
    expect(page.locator("table.dashboard tbody tr")).to_have_count(1)
    last_success = page.locator('[data-field="last-success"]')
    expect(last_success).to_contain_text(re.compile(r"just now|\b[1-9] minutes? ago"))  # a slow run may take one
    expect(last_success).to_have_class("fresh")
    expect(page.locator("svg.chart")).to_have_count(2)
    screenshot("dashboard")
    page.get_by_role("link", name="Backups", exact=True).click()
    listed.get_by_role("link").click()
    expect(page.locator("h1")).to_contain_text(f"backup-{source_db}-")
    filename = page.locator("h1").inner_text()
    sha256 = page.locator("code.hash").inner_text()
    expect(page.locator(".job-log pre")).to_contain_text("dumping postgresql://")
    expect(page.get_by_text("X-Backup-Sha256", exact=False).first).to_be_visible()
    screenshot("backup-detail")

    # Download through the browser.
    with page.expect_download() as info:
        page.get_by_role("link", name="Download").click()
    download = info.value
    assert download.suggested_filename == filename
    saved = tmp_path / "downloaded.dump"
    download.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == sha256

    # Restore, with the typed confirmation.
    pg_cluster.psql("DELETE FROM orders", source_db)
    page.get_by_role("link", name="Restore…").click()
    expect(page.get_by_role("note")).to_contain_text(f"are the sessions connected to {source_db} ended")
    expect(page.get_by_role("note")).to_contain_text(f"kept as {source_db}_before_restore_<UTC time>")
    page.get_by_label("Type the target database's name to confirm").fill("wrong-name")
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("alert")).to_contain_text("Confirmation does not match")
    page.get_by_label("Type the target database's name to confirm").fill(source_db)
    screenshot("restore")
    page.get_by_role("button", name="Restore").click()
    row = page.locator("tr.highlight")
    expect(row.locator('[data-field="status"]')).to_have_text("completed", timeout=30_000)
    expect(row.locator('[data-field="result"]')).to_contain_text(f"restored {filename}")
    expect(row.locator('[data-field="result"]')).to_contain_text(f"the previous database is kept as {source_db}_before")
    assert count_rows(pg_cluster, source_db) == 3000

    # Delete, after the confirmation page.
    row.get_by_role("link", name=filename).click()
    page.get_by_role("link", name="Delete…").click()
    expect(page.locator("h1")).to_have_text(f"Delete {filename}?")
    screenshot("delete")
    page.get_by_role("button", name="Delete this backup").click()
    expect(page).to_have_url(url + "/")
    expect(page.get_by_role("status")).to_have_text(f"Deleted {filename}.")
    expect(page.locator("p.empty")).to_contain_text("No backups yet")
    screenshot("backups-after-delete")

    # The database the restore replaced, kept beside it until the worker drops it.
    page.goto(url + "/targets/")
    expect(page.locator("table.previous")).to_contain_text(f"{source_db}_before_restore_")
    screenshot("targets-kept-databases")

    page.goto(url + "/backups/nosuchid")
    expect(page.locator(".error-page")).to_contain_text("Backup not found: nosuchid")
    screenshot("not-found")

    # Everything above, in the audit log: who did what, newest first.
    page.get_by_role("link", name="Audit", exact=True).click()
    actions = page.locator("table.audit tbody tr")
    expect(actions.first).to_contain_text("delete")
    expect(page.locator("table.audit")).to_contain_text("restore")
    screenshot("audit")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(url + "/login")
    expect(page.get_by_role("status")).to_have_text("Signed out.")
