"""An admin in Chromium on a target's PITR page: the status, a restore to a moment outside the
recoverable window (the worker fails the job and says why), and a base backup refused because
PITR is off for the target."""
import re

import pytest
from playwright.sync_api import expect

from tests.web_helpers import EMAIL, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]



def test_pitr_page_restore_outside_the_window_and_base_backup_refused(live_app, page, screenshot, source_db,
                                                                      data_root):
    page.goto(live_app.url + "/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Targets").click()
    page.locator(f'tr[data-target="{source_db}"]').get_by_role("link", name="PITR").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Point-in-time recovery: {source_db}")
    status = page.locator("table.pitr-status")
    expect(status.locator('[data-field="enabled"]')).to_contain_text("off")
    expect(status.locator('[data-field="receiver"]')).to_have_text("stopped")
    expect(status.locator('[data-field="window"]')).to_contain_text("nothing yet")
    expect(status.locator('[data-field="drill"]')).to_have_text("never run")
    expect(page.locator("p.empty")).to_have_text(re.compile("^No base backups yet"))
    expect(page.get_by_label("Time zone")).to_have_value("UTC")
    screenshot("pitr-status")

    # A restore to a moment in Berlin: the worker refuses it, naming the (empty) window in UTC.
    page.get_by_label("Restore to (date and time)").fill("2026-01-15T10:30:00")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    page.get_by_label("Data directory").fill(str(data_root / "restored"))
    screenshot("pitr-restore-form")
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
    expect(page.get_by_role("status")).to_contain_text(f"Restore of {source_db} as of 2026-01-15T09:30:00Z")
    job = page.locator("tr.highlight")
    expect(job).to_contain_text("pitr-restore")
    expect(job.locator('[data-field="status"]')).to_have_text("failed", timeout=30_000)
    expect(job.locator('[data-field="result"]')).to_have_text(
        f"2026-01-15T09:30:00Z is outside the recoverable window of {source_db}: "
        "empty (no base backup with its WAL)")
    screenshot("pitr-restore-failed")
    assert not (data_root / "restored").exists()

    # A base backup: refused before anything is queued, PITR being off for this target.
    page.get_by_role("link", name="Targets").click()
    page.locator(f'tr[data-target="{source_db}"]').get_by_role("link", name="PITR").click()
    page.get_by_label("Incremental").check()
    page.get_by_role("button", name="Take base backup").click()
    expect(page).to_have_url(re.compile(rf"/targets/{source_db}/pitr$"))
    expect(page.get_by_role("alert")).to_have_text(f"{source_db}: PITR is off for {source_db}: turn it on first "
                                                   f"(flask pitr enable {source_db}, or Enable on its PITR page)")
    screenshot("pitr-base-backup-refused")
