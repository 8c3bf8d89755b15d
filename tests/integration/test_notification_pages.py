"""Notifications set up in the pages: the URLs for every target (Settings) and a target's own, each with a
"Send a test" button, never shown back beyond their scheme and host; cron schedules said in words."""
import json

import pytest

from backup_app.core.formatting import cron_words
from tests.helpers import add_target, invoke
from tests.integration.test_notifications import Receiver
from tests.web_helpers import add_user, sign_in, submit, text

pytestmark = pytest.mark.integration
TOKEN = "s3cr3t-token"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def secret_url(receiver) -> str:
    """The receiver's URL with a token in its path, as a webhook's would carry one."""
    return receiver.url.replace("/hook", f"/hook/{TOKEN}")


def audit(runner, action: str) -> list[dict]:
    return json.loads(invoke(runner, "audit", "list", "--json", "--action", action).stdout)


def test_urls_for_every_target_are_set_tested_and_never_shown_back(app, runner, client, pg_cluster, source_db,
                                                                    receiver):
    saved = submit(client, "/settings/", {"urls": secret_url(receiver)}, follow_redirects=True)
    tested = submit(client, "/settings/notifications/test", form_url="/settings/", follow_redirects=True)
    page = text(client.get("/settings/"))

    assert "Saved 1 notification URL for every target." in text(saved)
    assert "json://127.0.0.1</code> <small class=\"muted\">set here" in page
    assert TOKEN not in text(saved) + text(tested) + page
    assert "Sent a test message." in text(tested)
    assert receiver.titles() == ["backup_app test message for every target"]
    assert [e["detail"] for e in audit(runner, "notify-test")] == ["ok"]
    assert TOKEN not in json.dumps(audit(runner, "settings-notify"))

    app.config["BACKUP_DATABASE_URL"] = pg_cluster.url(source_db, password="wrong")
    invoke(runner, "backup", "create", ok=False)
    assert receiver.titles()[1] == f"Backup of {source_db} FAILED", "the stored URLs are told about failures"


def test_a_bad_url_is_refused_and_an_empty_form_keeps_the_stored_ones(client, runner, receiver):
    refused = submit(client, "/settings/", {"urls": "nonsense://x"})
    submit(client, "/settings/", {"urls": secret_url(receiver)})
    kept = submit(client, "/settings/", {"urls": ""}, follow_redirects=True)
    forgot = submit(client, "/settings/", {"urls": "", "clear": "y"}, follow_redirects=True)
    untested = submit(client, "/settings/notifications/test", form_url="/settings/", follow_redirects=True)

    assert refused.status_code == 400 and "not an Apprise notification URL: nonsense://x" in text(refused)
    assert "Nothing entered; the stored URLs are kept." in text(kept)
    assert "Forgot the stored notification URLs." in text(forgot) and "none set" in text(forgot)
    assert "test notification failed: no notification URLs configured" in text(untested)
    [event] = audit(runner, "settings-notify-failed")
    assert event["detail"] == "refused: not an Apprise notification URL: nonsense://x"


def test_a_targets_own_urls_are_described_and_tested_from_its_page(keyed_app, pg_cluster, other_db, receiver):
    add_user(keyed_app)
    client = keyed_app.test_client()
    sign_in(client)
    add_target(keyed_app.test_cli_runner(), "other", pg_cluster.url(other_db), "--notify", secret_url(receiver),
               "--schedule", "*/5 * * * *")

    edit = text(client.get("/targets/other/edit"))
    tested = submit(client, "/targets/other/notify-test", form_url="/targets/other/edit", follow_redirects=True)

    assert "Stored: json://127.0.0.1 (the rest of each URL is never shown" in edit and TOKEN not in edit
    assert "other: sent a test message." in text(tested) and TOKEN not in text(tested)
    assert receiver.titles() == ["backup_app test message for other"]
    assert "<code>*/5 * * * *</code> UTC <span data-field=\"cron-words\">Every 5 minutes</span>" in text(
        client.get("/targets/"))


def test_cron_schedules_in_words():
    assert cron_words("*/5 * * * *") == "Every 5 minutes"
    assert cron_words("30 3 * * 1-5") == "At 03:30, Monday through Friday"
    assert cron_words("") == "" and cron_words("not a schedule") == ""

