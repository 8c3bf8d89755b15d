"""Failure first: each target's last attempt beside its last good backup (CLI, API, pages), staleness
from the schedule, storage limits told once per crossing, and /readyz that checks only the app's own
parts, within its time, against real PostgreSQL and SeaweedFS."""
import json
import threading

import pytest

from backup_app.extensions import db
from backup_app.jobs.scheduler import tick
from backup_app.models import Job, isoformat
from backup_app.services import notifications
from backup_app.web.readiness import CHECK_TIMEOUT
from devtools.localservers import reserve_port
from tests.helpers import SlowProxy, add_target, age_backups, create, error_line, invoke, new_key
from tests.integration.test_notifications import Receiver
from tests.web_helpers import add_user, api_token, sign_in, text

pytestmark = pytest.mark.integration


def targets_json(runner) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(invoke(runner, "targets", "list", "--json").stdout)}


def api_targets(app) -> dict[str, dict]:
    response = app.test_client().get("/api/targets", headers={"Authorization": f"Bearer {api_token(app)}"})
    assert response.status_code == 200
    return {t["name"]: t for t in response.json}


def signed_in(app):
    add_user(app)
    client = app.test_client()
    assert sign_in(client).status_code == 302
    return client


def test_last_attempt_is_null_then_the_failure_with_its_job_then_ok(make_app, pg_cluster, source_db):
    """The server is down for one run (the same target, its URL on a port nothing listens on), then back."""
    down = make_app(BACKUP_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{reserve_port()}/{source_db}")
    runner = down.test_cli_runner()
    before = targets_json(runner)[source_db]
    assert (before["last_attempt"], before["last_good_at"], before["stale"]) == (None, None, True)

    failed = invoke(runner, "backup", "create", ok=False)
    with down.app_context():
        [job] = db.session.query(Job).all()
    after_failure = targets_json(runner)[source_db]
    attempt = after_failure["last_attempt"]
    assert "Connection refused" in error_line(failed)
    assert attempt["status"] == "failed" and attempt["job_id"] == job.id
    assert "Connection refused" in attempt["error"] and attempt["at"] == isoformat(job.finished_at)
    assert after_failure["last_good_at"] is None
    add_user(down)
    assert api_targets(down)[source_db] == after_failure, "the API lists targets as the CLI does"

    up = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    backup = create(up.test_cli_runner())
    ok = targets_json(up.test_cli_runner())[source_db]
    assert ok["last_attempt"]["status"] == "completed" and ok["last_attempt"]["error"] is None
    assert ok["last_attempt"]["job_id"] != job.id
    assert ok["last_good_at"] == backup["created_at"] and ok["stale"] is False

    client = up.test_client()
    sign_in(client)
    page = text(client.get("/targets/"))
    assert f'href="/jobs/?highlight={ok["last_attempt"]["job_id"]}"' in page and "Connection refused" not in page


def test_a_failed_run_is_red_with_its_error_on_the_pages(make_app, pg_cluster, source_db):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), APP_ENCRYPTION_KEY=new_key())
    runner = app.test_cli_runner()
    create(runner)
    add_target(runner, "gone", f"postgresql://postgres@127.0.0.1:{reserve_port()}/gone")
    invoke(runner, "backup", "create", "--database", "gone", ok=False)
    with app.app_context():
        [job] = db.session.query(Job).filter_by(status="failed").all()
    client = signed_in(app)

    targets = text(client.get("/targets/"))
    dashboard = text(client.get("/dashboard"))

    row = targets[targets.index('data-target="gone"'):]
    row = row[:row.index("</tr>")]
    assert '<td class="failed">' in row and f'href="/jobs/?highlight={job.id}"' in row
    assert '<span class="badge failed">failed</span>' in row and "Connection refused" in row
    panel = dashboard.split('<section class="attention"')[1].split("</section>")[0]
    assert f'<a href="/jobs/?highlight={job.id}">The last backup of gone (failed, ' in panel
    assert 'data-kind="stale" data-subject="gone"' in panel and 'href="/targets/#target-gone"' in panel
    assert f'data-subject="{source_db}"' not in panel, "a target backed up just now needs nothing"


def test_staleness_defaults_to_twice_the_schedules_interval(keyed_app, pg_cluster, other_db):
    runner = keyed_app.test_cli_runner()
    add_target(runner, "often", pg_cluster.url(other_db), "--schedule", "*/5 * * * *")
    add_target(runner, "own", pg_cluster.url(other_db), "--schedule", "*/5 * * * *", "--stale-after-hours", "2")
    first, second = create(runner, "--database", "often"), create(runner, "--database", "own")
    assert not targets_json(runner)["often"]["stale"]

    age_backups(keyed_app, {first["id"]: 11 / 24 / 60, second["id"]: 11 / 24 / 60})  # 11 minutes old
    listed = targets_json(runner)
    page = text(signed_in(keyed_app).get("/dashboard"))

    assert listed["often"]["stale"] and not listed["own"]["stale"], "10 min for */5; its own 2 h wins"
    assert "older than 10 min" in page and "No good backup of often since" in page
    assert "(its limit: 10 min)" in page and 'data-kind="stale" data-subject="own"' not in page
    stale = json.loads(invoke(runner, "notify", "stale", "--json").stdout)
    assert [(alert["database"], alert["limit_hours"]) for alert in stale] == [("often", 0.17)]


def test_a_location_past_its_size_limit_is_shown_and_told_once_per_crossing(make_app, pg_cluster, source_db):
    receiver = Receiver()
    try:
        app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), NOTIFY_URLS=receiver.url,
                       STORAGE_ALERT_BYTES=1000, PRUNE_SCHEDULE="", SYNC_SCHEDULE="")
        create(app.test_cli_runner())
        with app.app_context():
            lines = tick(db.session)
            again = notifications.alert_storage_limits()
            app.config["STORAGE_ALERT_BYTES"] = 10**12
            under = notifications.alert_storage_limits()
            app.config["STORAGE_ALERT_BYTES"] = 1000
            crossed_again = notifications.alert_storage_limits()
        titles = receiver.titles()
    finally:
        receiver.close()
    assert [line for line in lines if "past its limit" in line] == [
        line for line in lines if line.startswith("local holds ") and line.endswith("past its limit of 1000: notified")]
    assert len([line for line in lines if "past its limit" in line]) == 1
    assert (again, under, [item.location for item in crossed_again]) == ([], [], ["local"])
    assert titles == ["Storage Local is past its size limit"] * 2

    page = text(signed_in(app).get("/dashboard"))
    assert 'data-kind="storage-full" data-subject="local"' in page and "past its limit of 1000 B" in page


def readyz_in_time(app):
    """/readyz's answer, asked on a thread and given 3 s: a deadline, not a wait."""
    answers = []
    asking = threading.Thread(target=lambda: answers.append(app.test_client().get("/readyz")), daemon=True)
    asking.start()
    asking.join(3)
    assert answers, "/readyz did not answer within 3 s"
    return answers[0].status_code, answers[0].json


def test_readyz_is_200_while_a_target_is_down_and_503_within_3_s_naming_a_hung_store(
        make_app, pg_cluster, source_db, s3_server, s3_settings):
    down = f"postgresql://postgres@127.0.0.1:{reserve_port()}/{source_db}"
    assert CHECK_TIMEOUT < 3
    with SlowProxy(("127.0.0.1", int(s3_server.endpoint.rsplit(":", 1)[1]))) as proxy:
        app = make_app(BACKUP_DATABASE_URL=down, **{**s3_settings, "MINIO_ENDPOINT": proxy.endpoint})
        invoke(app.test_cli_runner(), "storage", "init")
        assert readyz_in_time(app) == (200, {"status": "ok", "checks": {
            "catalog": "ok", "local": "ok", "s3": "ok", "queue": "ok"}}), "a target's server down is no concern of it"

        proxy.hold()
        try:
            status, body = readyz_in_time(app)
            again = readyz_in_time(app)  # the hung check is still running: it is not asked twice
        finally:
            proxy.release()
    assert (status, body) == (503, {"status": "fail", "checks": {
        "catalog": "ok", "local": "ok", "s3": "fail", "queue": "ok"}})
    assert again == (status, body)


def test_absurd_page_numbers_and_offsets_are_clamped_or_refused(make_app, pg_cluster, source_db):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db))
    runner = app.test_cli_runner()
    ids = [create(runner)["id"] for _ in range(6)]
    client = signed_in(app)
    headers = {"Authorization": f"Bearer {api_token(app)}"}

    for page in ("99999999999999999999999", "999999", "-3", "x"):
        listing = client.get(f"/?page={page}")
        assert listing.status_code == 200, page
        assert "6 backups." in text(listing) and "No backups" not in text(listing), page
        assert all(backup_id in text(listing) for backup_id in ids), "the last (only) page"
    huge = "99999999999999999999999"
    assert client.get(f"/api/backups?offset={huge}", headers=headers).json == []
    for query, message in ((f"limit={huge}", "limit must be 1 to 1000 and offset 0 or more"),
                           ("offset=-1", "limit must be 1 to 1000 and offset 0 or more"),
                           ("limit=ten", "limit must be a whole number, not 'ten'"),
                           ("colour=red", "unknown filter 'colour'; the filters are database, status, limit, offset"),
                           ("status=lost", "status must be one of running, completed, failed, not 'lost'")):
        response = client.get(f"/api/backups?{query}", headers=headers)
        assert (response.status_code, response.json) == (400, {"error": message}), query
    nobody = client.get("/api/backups?database=nobody", headers=headers)
    assert (nobody.status_code, nobody.json) == (404, {"error": "no target and no backups named 'nobody'"})
    assert client.get(f"/api/backups?database={source_db}&status=completed", headers=headers).headers[
        "X-Total-Count"] == "6"

    page_filter = client.get("/?colour=red")
    assert page_filter.status_code == 400
    assert "unknown filter &#39;colour&#39;; the filters are database, status, page" in text(page_filter)
    assert client.get("/?database=nobody").status_code == 404
    assert client.get("/?status=lost").status_code == 400
    assert client.get("/api/targets/nobody/pitr", headers=headers).status_code == 404


def test_a_backup_with_a_failed_copy_is_shown_as_failed(make_app, pg_cluster, source_db):
    dead_s3 = f"127.0.0.1:{reserve_port()}"
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), MINIO_ENDPOINT=dead_s3, MINIO_ACCESS_KEY="k",
                   MINIO_SECRET_KEY="s")
    backup = create(app.test_cli_runner())
    client = signed_in(app)

    for url in ("/", f"/backups/{backup['id']}", "/targets/"):
        page = text(client.get(url))
        assert '<span class="status copy failed">copy failed</span>' in page, url
        assert '<span class="status completed">completed</span></td>' not in page, url
    [target] = json.loads(invoke(app.test_cli_runner(), "targets", "list", "--json").stdout)
    assert target["last_attempt"]["status"] == "copy failed", "as the pages say, not a bare completed"
    assert target["last_attempt"]["error"].startswith("s3 copy failed")
