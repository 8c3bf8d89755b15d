"""Any screen, and progress a person can read: every page fits a 390 px phone, and a running
backup's percentage moves on the jobs page without a reload."""
import json
import re

import pytest
from playwright.sync_api import expect

from devtools.localservers import wait_until
from tests.browser.conftest import SCREENSHOTS
from tests.helpers import SlowProxy
from tests.web_helpers import EMAIL, PASSWORD, LiveApp, live_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PHONE = {"width": 390, "height": 844}


def sign_in(page, url: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def fits(page) -> bool:
    """Whether the page, styled, is no wider than the screen (measured after its stylesheet has loaded)."""
    page.wait_for_load_state("load")
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def wide(page) -> list[str]:
    """The innermost elements that reach past the screen's right edge, to say what to fix."""
    return page.evaluate("""[...document.querySelectorAll('main *, header *')]
        .filter(e => e.getBoundingClientRect().right > window.innerWidth
                     && ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth))
        .map(e => e.tagName + '.' + e.className + ' ' + (e.textContent || '').trim().slice(0, 40))""")


def test_every_page_fits_a_phone(live_app, browser, source_db):
    token = live_app.flask("users", "token", EMAIL).strip()
    job_id = live_app.api("POST", "/api/backups", token)["job_id"]
    wait_until(lambda: live_app.api("GET", f"/api/jobs/{job_id}", token)["status"] == "completed", 60, "a backup")
    backup_id = live_app.api("GET", f"/api/jobs/{job_id}", token)["backup_id"]
    [target] = json.loads(live_app.flask("targets", "list", "--json"))

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        page.goto(live_app.url + "/login")
        assert fits(page), "/login"
        sign_in(page, live_app.url)
        for path in ["/", "/dashboard", f"/backups/{backup_id}", f"/backups/{backup_id}/restore", "/backups/new",
                     "/targets/", f"/targets/{target['name']}/pitr", "/jobs/", "/audit", "/storage", "/restores/",
                     "/settings/", "/users/", "/account/", "/account/tokens"]:
            page.goto(live_app.url + path)
            assert fits(page), f"{path} is {page.evaluate('document.documentElement.scrollWidth')} px wide: {wide(page)}"
        page.goto(live_app.url + "/dashboard")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "phone-dashboard.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture
def slow_target(pg_cluster):
    """A database of 40 tables of 1 MB each, reached through a proxy that starts every answer
    0.1 s late: its dump runs for seconds, a table at a time."""
    name = "progress_shop"
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}"')
    pg_cluster.createdb(name)
    pg_cluster.psql("".join(f"CREATE TABLE t{n:02} AS SELECT g AS id, md5(random()::text) || md5(random()::text) "
                            f"AS body FROM generate_series(1, 14000) g;" for n in range(40)), name)
    with SlowProxy(("127.0.0.1", pg_cluster.port), delay=0.1) as proxy:
        yield pg_cluster.url(name).replace(f":{pg_cluster.port}/", f":{proxy.port}/")
    pg_cluster.psql(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def slow_app(tmp_path, slow_target, s3_settings, catalog_url, data_root):
    app = LiveApp(live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=slow_target, PITR_RESTORE_ROOT=data_root,
                           **s3_settings), tmp_path).start()
    yield app
    app.stop()


def test_a_running_backup_shows_its_percentage_moving_without_a_reload(slow_app, page, screenshot):
    url = slow_app.url
    sign_in(page, url)
    page.get_by_role("link", name="New backup").first.click()
    page.get_by_role("button", name="Back up now").click()
    expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
    page.evaluate("window.sameDocument = true")
    row = page.locator("tr.highlight")
    queued = page.locator("main > p.flash")
    expect(queued).to_contain_text("queued")
    # Every state the row is swapped into, kept by the page: a poll can land at any moment, so the
    # test reads what the admin saw over the whole run rather than catching one moment of it.
    page.evaluate("""new MutationObserver(() => {
        const row = document.querySelector('tr.highlight');
        const field = name => row && row.querySelector(`[data-field="${name}"]`)?.textContent;
        if (field('percent')) window.seen.push({percent: field('percent'), rate: field('rate'), eta: field('eta')});
    }).observe(document.querySelector('main'), {subtree: true, childList: true, characterData: true});
    window.seen = [];""")

    expect(row.locator('[data-field="percent"]')).to_be_visible(timeout=60_000)
    screenshot("jobs-progress")
    expect(row.locator('[data-field="status"]')).to_have_text("completed", timeout=120_000)
    expect(queued).not_to_contain_text("queued")
    expect(queued).to_contain_text("completed")
    assert page.evaluate("window.sameDocument") is True, "refreshed in place, not reloaded"
    seen = page.evaluate("window.seen")
    assert len({state["percent"] for state in seen}) >= 2, f"the percentage moved: {seen}"
    assert any((state["rate"] or "").endswith("/s") and (state["eta"] or "").endswith("left") for state in seen), seen
