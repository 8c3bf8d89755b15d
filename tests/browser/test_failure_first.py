"""An admin in Chromium sees what is wrong first: a target whose last run failed is red on the
dashboard, with its error in the attention panel and a link to its job, and a backup whose S3 copy
failed is shown as failed, not as a green "completed"."""
import re
import subprocess

import pytest
from playwright.sync_api import expect

from devtools.localservers import reserve_port
from tests.web_helpers import BIN, EMAIL, PASSWORD, ROOT

pytestmark = [pytest.mark.browser, pytest.mark.integration]
RED_BADGE, RED_TEXT = "rgb(248, 212, 212)", "rgb(180, 35, 24)"


def test_a_failed_run_and_a_failed_copy_are_red_on_the_dashboard(live_app, page, screenshot, source_db):
    live_app.flask("targets", "add", "gone", "--url", f"postgresql://postgres@127.0.0.1:{reserve_port()}/gone")
    # A backup of the live target while its S3 store is unreachable: the local copy is made, the S3 one fails.
    subprocess.run([str(BIN / "flask"), "backup", "create"], cwd=ROOT, check=True, capture_output=True,
                   env={**live_app.env, "MINIO_ENDPOINT": f"127.0.0.1:{reserve_port()}"})

    page.goto(live_app.url + "/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Targets").click()
    page.locator('tr[data-target="gone"]').get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
    job_id = page.url.rsplit("=", 1)[1]
    expect(page.locator('tr.highlight [data-field="status"]')).to_have_text("failed", timeout=30_000)

    page.get_by_role("link", name="Dashboard", exact=True).click()
    failed_run = page.locator('section.attention li[data-kind="failed-run"][data-subject="gone"]')
    expect(failed_run).to_contain_text("The last backup of gone (failed, ")
    expect(failed_run).to_contain_text("Connection refused")
    expect(failed_run).to_have_css("border-left-color", RED_TEXT)
    expect(page.locator(f'section.attention li[data-kind="copies"][data-subject="{source_db}"]')).to_contain_text(
        "MinIO: cannot reach S3 at")
    gone_attempt = page.locator("table.dashboard tr", has_text="gone").locator('[data-field="last-attempt"]')
    expect(gone_attempt).to_have_attribute("data-status", "failed")
    expect(gone_attempt.locator(".badge")).to_have_text("failed")
    expect(gone_attempt.locator(".badge")).to_have_css("background-color", RED_BADGE)
    expect(gone_attempt.locator("small.error")).to_contain_text("Connection refused")
    copy_attempt = page.locator("table.dashboard tr", has_text=source_db).locator('[data-field="last-attempt"]')
    expect(copy_attempt.locator(".badge")).to_have_text("copy failed")
    expect(copy_attempt.locator(".badge")).to_have_css("background-color", RED_BADGE)
    screenshot("dashboard-failure")

    failed_run.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"/jobs/\?highlight={job_id}$"))

    page.get_by_role("link", name="Backups", exact=True).click()
    status = page.locator("table.backups tbody tr", has_text=f"backup-{source_db}-").locator(".status")
    expect(status).to_have_text("copy failed")
    expect(status).to_have_css("color", RED_TEXT)
