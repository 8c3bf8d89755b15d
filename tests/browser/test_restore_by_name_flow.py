"""An admin in Chromium restores a backup into a new database by name and into another target,
each with the stored credentials, and no response of the whole flow holds the server's password
(not even the form shown again after an error with a URL that has it)."""
import json
import re

import pytest
from playwright.sync_api import expect

from tests.helpers import count_rows, new_key
from tests.web_helpers import EMAIL, PASSWORD, LiveApp, live_env

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CONFIRM = "Type the target database's name to confirm"


@pytest.fixture
def keyed_live_app(tmp_path, pg_cluster, source_db, s3_settings, catalog_url, data_root):
    """`live_app` with APP_ENCRYPTION_KEY set, so targets can keep a password."""
    app = LiveApp(live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=pg_cluster.url(source_db),
                           APP_ENCRYPTION_KEY=new_key(), PITR_RESTORE_ROOT=data_root, **s3_settings), tmp_path).start()
    yield app
    app.stop()


def test_restore_into_a_new_database_and_another_target(keyed_live_app, page, screenshot, pg_cluster, source_db,
                                                        other_db):
    live = keyed_live_app
    live.flask("targets", "add", "other", "--url", pg_cluster.url(other_db))
    backup = json.loads(live.flask("backup", "create", "--database", source_db, "--json"))
    seen: list[str] = []

    def watch(route):
        """Every response the browser gets, read before it is handed on."""
        response = route.fetch(max_redirects=0)
        seen.append(response.text() if "text" in response.headers.get("content-type", "") else "")
        route.fulfill(response=response)
    page.route("**/*", watch)

    page.goto(live.url + "/login")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{live.url}/backups/{backup['id']}/restore")
    new = source_db + "_copy"
    expect(page.get_by_role("note")).to_contain_text("The confirmation names the database that will change")

    # The new name typed, but "its own database" still selected: refused, without inviting the swap.
    page.get_by_label("New database's name").fill(new)
    page.get_by_label(CONFIRM).fill(new)
    page.get_by_role("button", name="Restore").click()
    error = page.locator(".field-error")
    expect(error).to_contain_text('but "its own database" is selected: choose "a new database on the same server"')
    expect(error).not_to_contain_text(f"type {source_db}")

    page.get_by_label("a new database on the same server").check()
    screenshot("restore-by-name")
    page.get_by_role("button", name="Restore").click()
    expect(page).to_have_url(re.compile(r"/jobs/\?highlight=[a-z0-9]+$"))
    row = page.locator("tr.highlight")
    expect(row.locator('[data-field="status"]')).to_have_text("completed", timeout=30_000)
    assert count_rows(pg_cluster, new) == 3000 and count_rows(pg_cluster, source_db) == 3000

    # A server no target names, with a password in the URL and the wrong name: shown again without it.
    page.goto(f"{live.url}/backups/{backup['id']}/restore")
    page.get_by_label("a server no target names (connection URL)").check()
    page.get_by_label("Connection URL", exact=True).fill(pg_cluster.url(source_db + "_url"))
    page.get_by_label(CONFIRM).fill("wrong")
    page.get_by_role("button", name="Restore").click()
    expect(page.get_by_role("alert")).to_contain_text(f"type the target database name '{source_db}_url'")
    expect(page.get_by_label("Connection URL", exact=True)).to_have_value(
        f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{source_db}_url")

    # Another target, with its stored credentials: its database is replaced, the previous one kept.
    page.get_by_label("another target (its stored credentials are used)").check()
    page.get_by_label("Target", exact=True).select_option("other")
    page.get_by_label(CONFIRM).fill(other_db)
    page.get_by_role("button", name="Restore").click()
    row = page.locator("tr.highlight")
    expect(row.locator('[data-field="status"]')).to_have_text("completed", timeout=30_000)
    expect(row.locator('[data-field="result"]')).to_contain_text(f"the previous database is kept as {other_db}_before")
    assert count_rows(pg_cluster, other_db) == 3000

    page.get_by_role("link", name="Restores").click()
    expect(page.locator(f'tr[data-name^="{other_db}_before_restore_"]')).to_have_count(1)
    screenshot("restores")

    assert len(seen) > 10
    assert not [body for body in seen if pg_cluster.password in body], "the password is never shown back"
