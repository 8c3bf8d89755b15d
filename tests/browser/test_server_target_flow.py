"""An admin in Chromium adds a server target (every database of a server of the test's own), runs
it, and sees it on the dashboard as one row with its databases under it; the set's page; and these
pages fit a 390 px phone."""
import re

import pytest
from playwright.sync_api import expect

from devtools.localservers import PostgresCluster
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_phone_and_progress import PHONE, fits, sign_in, wide
from tests.helpers import new_key
from tests.web_helpers import LiveApp, live_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def server(tmp_path):
    """shop, crm and legacy (to leave out) on a server of the test's own."""
    cluster = PostgresCluster(tmp_path / "server").start()
    for name in ("shop", "crm", "legacy"):
        cluster.createdb(name)
    cluster.psql("CREATE TABLE items (id int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 100)", "shop")
    yield cluster
    cluster.stop()


@pytest.fixture
def server_app(tmp_path, s3_settings, catalog_url, data_root):
    """gunicorn and a worker with no target yet (APP_ENCRYPTION_KEY set: the form stores a password)."""
    app = LiveApp(live_env(tmp_path, catalog_url, APP_ENCRYPTION_KEY=new_key(), PITR_RESTORE_ROOT=data_root,
                           **s3_settings), tmp_path).start()
    yield app
    app.stop()


def test_a_server_target_added_on_the_page_shows_its_set_on_the_dashboard(server_app, server, page, screenshot,
                                                                           browser):
    url = server_app.url
    sign_in(page, url)
    page.get_by_role("link", name="Targets").click()
    page.get_by_role("link", name="Add a target").click()
    page.get_by_label("Name", exact=True).fill("srv")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(server.port))
    page.get_by_label("User").fill("postgres")
    page.get_by_label("Password", exact=True).fill(server.password)
    page.get_by_label("Every database of the server").check()
    page.get_by_label("Leave out these databases").fill("legacy")
    screenshot("server-target-add")
    page.get_by_role("button", name="Add target").click()

    expect(page.get_by_role("status")).to_contain_text("Added srv.")
    row = page.locator('tr[data-target="srv"]')
    expect(row).to_contain_text(f"postgresql://postgres@127.0.0.1:{server.port}/ (every database)")
    expect(row).to_contain_text("leaves out legacy")
    row.get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
    expect(page.locator("tr.highlight").locator('[data-field="status"]')).to_have_text("completed", timeout=90_000)

    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator('table.dashboard [data-target="srv"]')).to_have_count(1)
    members = page.locator("table.dashboard tr.set-member")
    expect(members).to_have_count(4)  # the globals, crm, postgres, shop
    expect(members.locator("td.set-name")).to_have_text(
        ["↳ roles and settings (globals)", "↳ crm", "↳ postgres", "↳ shop"])
    expect(page.locator('tr[data-set-database="shop"]')).to_contain_text("completed")
    screenshot("server-target-dashboard")

    page.locator('table.dashboard [data-target="srv"] [data-field="set"]').click()
    expect(page.locator("h1")).to_contain_text("Backup set")
    expect(page.locator("table.set tbody tr")).to_have_count(4)
    expect(page.get_by_role("button", name="Restore this set")).to_be_visible()
    set_path = page.url.removeprefix(url)
    screenshot("backup-set")

    phone = browser.new_context(viewport=PHONE).new_page()
    try:
        sign_in(phone, url)
        for path in ["/dashboard", "/targets/", "/targets/new", "/targets/srv/edit", set_path, "/"]:
            phone.goto(url + path)
            assert fits(phone), f"{path} is {phone.evaluate('document.documentElement.scrollWidth')} px wide: " \
                                f"{wide(phone)}"
        phone.goto(url + set_path)
        phone.screenshot(path=str(SCREENSHOTS / "phone-backup-set.png"), full_page=True)
    finally:
        phone.context.close()
