"""Progress a person can read: jobs say what they expect to move (bytes_total) beside what they
moved, the restore's phases move bytes, and the jobs page pages and filters."""
import html
import re
from datetime import timedelta

import pytest

from backup_app import models
from backup_app.extensions import db
from backup_app.models import Job, utcnow
from devtools.localservers import wait_until
from tests.web_helpers import EMAIL, LiveApp, TableLock, live_env, text

pytestmark = pytest.mark.integration


@pytest.fixture
def live(tmp_path, pg_cluster, source_db, s3_settings, catalog_url, data_root):
    """gunicorn + a worker whose heartbeat (which also writes the progress a stuck phase made) beats every second."""
    app = LiveApp(live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=pg_cluster.url(source_db),
                           PITR_RESTORE_ROOT=data_root, JOB_HEARTBEAT_SECONDS=1, **s3_settings), tmp_path).start()
    app.token = app.flask("users", "token", EMAIL).strip()
    yield app
    app.stop()


def finished(live, job_id: str) -> dict:
    wait_until(lambda: live.api("GET", f"/api/jobs/{job_id}", live.token)["status"] not in ("queued", "running"),
               60, f"job {job_id}")
    return live.api("GET", f"/api/jobs/{job_id}", live.token)


def test_a_backup_and_a_restore_report_their_expected_size_and_the_restore_moves_bytes(live, pg_cluster,
                                                                                      source_db):
    created = finished(live, live.api("POST", "/api/backups", live.token)["job_id"])
    backup = live.api("GET", f"/api/backups/{created['backup_id']}", live.token)
    assert created["status"] == "completed"
    assert created["bytes_total"] == created["bytes_done"] == backup["size_bytes"] > 0, created

    lock = TableLock(pg_cluster, source_db, "orders")  # the in-place restore's DROP waits on it, mid-file
    try:
        job_id = live.api("POST", f"/api/backups/{backup['id']}/restore", live.token,
                          {"confirm": source_db, "in_place": True})["job_id"]
        job = lambda: live.api("GET", f"/api/jobs/{job_id}", live.token)  # noqa: E731
        wait_until(lambda: job()["phase"] == "restoring" and job()["bytes_done"] > 0, 30,
                   "the restore's bytes read while it waits on the lock")
        waiting = job()
        assert waiting["status"] == "running"
        assert waiting["bytes_total"] == backup["size_bytes"] and 0 < waiting["bytes_done"] <= backup["size_bytes"]
    finally:
        lock.release()

    restored = finished(live, job_id)
    assert restored["status"] == "completed", restored
    assert restored["bytes_total"] == restored["bytes_done"] == backup["size_bytes"]


def add_jobs(app, count: int, **values) -> list[str]:
    start = utcnow() - timedelta(days=1)
    with app.app_context():
        jobs = [Job(kind=values.get("kind", "create"), status=values.get("status", "completed"),
                    database=values.get("database", "shop"), target="t", slot=f"s{n}", log="",
                    created_at=start + timedelta(minutes=n)) for n in range(count)]
        db.session.add_all(jobs)
        db.session.commit()
        return [job.id for job in jobs]


def listed(response) -> list[str]:
    return re.findall(r'<tr id="job-([a-z0-9]+)"', response.get_data(as_text=True))


def test_the_jobs_page_filters_by_kind_status_and_target_and_pages(bare_app, bare_client):
    creates = add_jobs(bare_app, 55)
    failed = add_jobs(bare_app, 2, kind="verify", status="failed", database="inventory")

    first, second = bare_client.get("/jobs/"), bare_client.get("/jobs/?page=2")
    assert "57 jobs." in text(first) and "Page 1 of 2" in text(first)
    assert listed(first) == (failed + creates)[::-1][:50] and len(listed(second)) == 7
    assert bare_client.get("/jobs/?page=99999999999999999999999").status_code == 200  # clamped to the last
    assert "Page 2 of 2" in text(bare_client.get("/jobs/?page=99999999999999999999999"))
    assert "Page 1 of 2" in text(bare_client.get("/jobs/?page=abc"))

    assert set(listed(bare_client.get("/jobs/?kind=verify"))) == set(failed)
    assert set(listed(bare_client.get("/jobs/?status=failed&target=inventory"))) == set(failed)
    assert listed(bare_client.get("/jobs/?kind=verify&status=completed")) == []
    narrowed = bare_client.get("/jobs/?target=shop&page=2")
    assert "55 jobs matching." in text(narrowed) and 'href="/jobs/?page=1&amp;target=shop"' in text(narrowed)


@pytest.mark.parametrize("query, message", [
    ("kind=backup", "unknown kind 'backup': choose one of create, restore, restore-set, verify"),
    ("status=done", "unknown status 'done': choose one of queued, running, completed, failed, interrupted"),
])
def test_a_bad_filter_is_a_400_naming_it(bare_client, query, message):
    response = bare_client.get(f"/jobs/?{query}")
    assert response.status_code == 400 and message in html.unescape(text(response))


def test_an_unknown_target_is_a_404_naming_it(bare_client):
    response = bare_client.get("/jobs/?target=nowhere")
    assert response.status_code == 404 and "unknown target 'nowhere'" in html.unescape(text(response))


def test_a_running_row_refreshes_itself_with_its_percentage_rate_and_time_left(bare_app, bare_client, monkeypatch):
    now = utcnow()
    monkeypatch.setattr(models, "utcnow", lambda: now)  # the rate is over exactly 10 s, however slow the request
    with bare_app.app_context():
        started = now - timedelta(seconds=10)
        job = Job(kind="restore", status="running", phase="restoring", database="shop", target="t", slot="s",
                  log="", started_at=started, phase_started_at=started, bytes_done=25 * 1024 ** 2,
                  bytes_total=100 * 1024 ** 2)
        db.session.add(job)
        db.session.commit()
        job_id = job.id

    row = text(bare_client.get(f"/jobs/{job_id}/row?highlight=1"))
    assert f'hx-get="/jobs/{job_id}/row?highlight=1" hx-trigger="every 2s"' in row
    assert '<span data-field="percent">25%</span>' in row and "of 100.0 MB" in row
    assert "2.5 MB/s" in row and "about 30 s left" in row
    assert "hx-swap-oob" not in row, "the queued message stays while the job runs"

    with bare_app.app_context():
        db.session.get(Job, job_id).status = "completed"
        db.session.commit()
    row = text(bare_client.get(f"/jobs/{job_id}/row?highlight=1"))
    assert "hx-get" not in row and "%" not in row, "a finished row stops asking"
    assert f'hx-swap-oob="outerHTML:main > p.flash.success">Job {job_id} completed.' in row
    assert bare_client.get("/jobs/nosuchjob/row").status_code == 404
