"""An admin in Chromium: the targets page (test connection, run now, edit, retention preview),
then "Verify now" on the backup and its badge on the list."""
import re

import pytest
from playwright.sync_api import expect

from tests.web_helpers import EMAIL, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_targets_page_run_now_verify_badge(live_app, page, screenshot, source_db):
    url = live_app.url
    page.goto(url + "/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.get_by_role("link", name="Targets").click()
    row = page.locator(f'tr[data-target="{source_db}"]')
    expect(row).to_contain_text("from BACKUP_DATABASE_URL")
    expect(row).to_contain_text("none yet")
    row.get_by_role("button", name="Test connection").click()
    expect(page.get_by_role("status")).to_contain_text(f"{source_db}: PostgreSQL 15.")

    # Edit: a schedule and its next run; the connection of this target is not editable here.
    page.locator(f'tr[data-target="{source_db}"]').get_by_role("link", name="Edit").click()
    expect(page).to_have_url(re.compile(rf"/targets/{source_db}/edit$"))
    expect(page.get_by_label("Host")).to_have_count(0)
    page.get_by_label("Backup schedule (cron)").fill("every night")
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".field-error")).to_contain_text("invalid cron expression 'every night'")
    page.get_by_label("Backup schedule (cron)").fill("0 3 * * *")
    page.get_by_label("Time zone").fill("Europe/Berlin")
    screenshot("target-edit")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text(f"Saved {source_db}. Next backup")
    expect(page.locator(f'tr[data-target="{source_db}"]')).to_contain_text("0 3 * * * Europe/Berlin")
    screenshot("targets")

    # Run now → the job completes on the jobs page.
    page.locator(f'tr[data-target="{source_db}"]').get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
    job = page.locator("tr.highlight")
    expect(job.locator('[data-field="status"]')).to_have_text("completed", timeout=30_000)

    # Verify now, from the backup's page.
    job.locator('[data-field="backup"] a').click()
    page.get_by_role("button", name="Verify now").click()
    verify = page.locator("tr.highlight")
    expect(verify).to_contain_text("verify")
    expect(verify.locator('[data-field="status"]')).to_have_text("completed", timeout=30_000)
    expect(verify.locator('[data-field="result"]')).to_contain_text("restorable, 2 tables, 4000 rows")

    page.get_by_role("link", name="Backups", exact=True).click()
    listed = page.locator("table.backups tbody tr")
    expect(listed.locator(".verify")).to_have_text("verified restorable just now")
    expect(page.locator(".usage-panel table.usage tfoot")).to_contain_text("(1 backup)")  # loaded after the list
    screenshot("backups-verified")
    page.get_by_role("link", name="Storage used").click()
    expect(page.locator("table.usage tfoot")).to_contain_text("(1 backup)")
    screenshot("storage-used")
    page.get_by_role("link", name="Backups", exact=True).click()
    listed.get_by_role("link").click()
    expect(page.locator("table.verifications > tbody > tr")).to_contain_text("passed 2 4,000")
    screenshot("backup-verifications")

    page.get_by_role("link", name="Targets").click()
    page.locator(f'tr[data-target="{source_db}"]').get_by_role("link", name="Retention preview").click()
    expect(page.locator("p.empty")).to_have_text(f"A prune now would delete nothing of {source_db}.")
    screenshot("retention-preview")
    page.get_by_role("link", name="Back to the targets").click()
    page.get_by_role("link", name="Add a target").click()
    screenshot("target-add")
