"""The pages and the API against real PostgreSQL and SeaweedFS; jobs run inside the request
(huey immediate mode), so each create or restore has finished when the request returns."""
import hashlib
import json

import pytest

from backup_app.extensions import db
from backup_app.models import Job
from devtools.localservers import reserve_port
from tests.helpers import all_jobs, copy_status, count_rows
from tests.web_helpers import add_user, api_token, sign_in, submit, text

pytestmark = pytest.mark.integration


def only_job(app) -> Job:
    [job] = all_jobs(app)
    return job


def create_through_page(client, source_db):
    response = submit(client, "/backups/new", {"database": source_db})
    assert response.status_code == 302 and response.headers["Location"].startswith("/jobs/")
    return response


def test_create_page_queues_a_job_that_completes_with_both_copies(app, client, source_db):
    create_through_page(client, source_db)

    job = only_job(app)
    assert (job.kind, job.status, job.phase, job.database) == ("create", "completed", "done", source_db)
    assert job.bytes_done > 0 and job.started_at and job.finished_at
    backup = client.get(f"/api/backups/{job.backup_id}")  # session cookies do not open the API
    assert backup.status_code == 401
    jobs_page = text(client.get("/jobs/"))
    assert job.id in jobs_page and "completed" in jobs_page
    listing = text(client.get("/"))
    assert "Local: present" in listing and "MinIO: present" in listing
    detail = text(client.get(f"/backups/{job.backup_id}"))
    assert "dumping postgresql://" in detail and "completed backup-" in detail, "the job log"
    assert "X-Backup-Sha256" in detail or "x-backup-sha256" in detail.lower(), "the object metadata"


def test_download_streams_local_then_s3_copy(app, client, source_db, backup_dir):
    create_through_page(client, source_db)
    job = only_job(app)
    with app.app_context():
        backup = db.session.get(Job, job.id).backup.to_dict()

    local = client.get(f"/backups/{backup['id']}/download")
    assert local.status_code == 200
    assert hashlib.sha256(local.data).hexdigest() == backup["sha256"]
    assert local.headers["Content-Disposition"] == f"attachment; filename={backup['filename']}"
    assert local.headers["Content-Type"] == "application/octet-stream"
    assert int(local.headers["Content-Length"]) == backup["size_bytes"]

    (backup_dir / backup["filename"]).unlink()
    from_s3 = client.get(f"/backups/{backup['id']}/download")
    assert hashlib.sha256(from_s3.data).hexdigest() == backup["sha256"]
    assert not (backup_dir / backup["filename"]).exists(), "a download does not write BACKUP_DIR"


def test_restore_page_needs_the_typed_name_then_restores(app, client, pg_cluster, source_db):
    create_through_page(client, source_db)
    backup_id = only_job(app).backup_id
    pg_cluster.psql("DELETE FROM orders", source_db)
    url = f"/backups/{backup_id}/restore"

    page = text(client.get(url))
    assert f"type <strong>{source_db}</strong>" in page
    assert f"are the sessions connected to {source_db} ended" in page, "said before anything runs"
    assert f"the current {source_db} is then kept as {source_db}_before_restore_&lt;UTC time&gt; (dropped after 24 h)" \
        in page, "and where the previous data is kept"
    wrong = submit(client, url, {"target": "configured", "confirm": "something-else"})
    assert wrong.status_code == 400 and "Confirmation does not match" in text(wrong)
    assert count_rows(pg_cluster, source_db) == 0
    both = submit(client, url, {"target": "configured", "how": "in_place", "drop_previous": "y", "confirm": source_db})
    assert both.status_code == 200 and "An in-place restore keeps no previous database to drop." in text(both)

    done = submit(client, url, {"target": "configured", "confirm": source_db})
    assert done.status_code == 302
    assert count_rows(pg_cluster, source_db) == 3000
    [job] = [j for j in all_jobs(app) if j.kind == "restore"]
    assert f"the previous database is kept as {source_db}_before_restore_" in job.result
    assert f"{source_db}_before_restore_" in text(client.get("/targets/")), "listed with the targets"


def test_restore_into_another_url(app, client, pg_cluster, source_db):
    create_through_page(client, source_db)
    backup_id = only_job(app).backup_id
    other = source_db + "_web"
    try:
        response = submit(client, f"/backups/{backup_id}/restore",
                          {"target": "other", "target_url": pg_cluster.url(other), "confirm": other})
        assert response.status_code == 302
        assert count_rows(pg_cluster, other) == 3000
    finally:
        pg_cluster.dropdb(other)


def test_delete_page_removes_everything(app, client, source_db, s3, backup_dir):
    create_through_page(client, source_db)
    job = only_job(app)
    with app.app_context():
        filename = db.session.get(Job, job.id).backup.filename

    response = submit(client, f"/backups/{job.backup_id}/delete", follow_redirects=True)

    assert f"Deleted {filename}." in text(response)
    assert s3.stat(filename) is None and not (backup_dir / filename).exists()
    assert client.get(f"/backups/{job.backup_id}").status_code == 404
    assert job.id in text(client.get("/jobs/")), "the job stays as history"


def test_api_checklist(app, client, pg_cluster, source_db, s3):
    headers = {"Authorization": f"Bearer {api_token(app)}"}
    api = app.test_client()

    created = api.post("/api/backups", headers=headers)
    assert created.status_code == 202
    job = api.get(f"/api/jobs/{created.json['job_id']}", headers=headers).json
    assert {"id", "kind", "status", "phase", "bytes_done", "error"} <= set(job)
    assert job["status"] == "completed" and job["kind"] == "create"

    listed = api.get("/api/backups", headers=headers).json
    assert [b["id"] for b in listed] == [job["backup_id"]]
    backup = api.get(f"/api/backups/{job['backup_id']}", headers=headers).json
    assert backup == listed[0]
    cli = json.loads(app.test_cli_runner().invoke(args=["backup", "show", backup["id"], "--json"]).stdout)
    assert backup == cli, "same shape as the CLI's --json"
    assert copy_status(backup) == {"local": "present", "s3": "present"}

    download = api.get(f"/api/backups/{backup['id']}/download", headers=headers)
    assert hashlib.sha256(download.data).hexdigest() == backup["sha256"]

    pg_cluster.psql("DELETE FROM orders", source_db)
    refused = api.post(f"/api/backups/{backup['id']}/restore", headers=headers, json={"confirm": "nope"})
    assert refused.status_code == 400 and "Confirmation does not match" in refused.json["error"]
    restored = api.post(f"/api/backups/{backup['id']}/restore", headers=headers, json={"confirm": source_db})
    assert restored.status_code == 202
    assert api.get(f"/api/jobs/{restored.json['job_id']}", headers=headers).json["status"] == "completed"
    assert count_rows(pg_cluster, source_db) == 3000

    assert api.delete(f"/api/backups/{backup['id']}", headers=headers).status_code == 204
    assert api.get(f"/api/backups/{backup['id']}", headers=headers).status_code == 404
    assert s3.stat(backup["filename"]) is None


def test_failed_dump_shows_pg_dumps_message(make_app, pg_cluster, source_db, s3_settings):
    bad_url = pg_cluster.url(source_db, password="wrong-password")
    app = make_app(BACKUP_DATABASE_URL=bad_url, **s3_settings)
    add_user(app)
    client = app.test_client()
    sign_in(client)

    create_through_page(client, source_db)

    job = only_job(app)
    assert job.status == "failed" and "password authentication failed" in job.error
    page = text(client.get("/jobs/"))
    assert "password authentication failed" in page
    assert "failed" in text(client.get(f"/backups/{job.backup_id}"))


def test_s3_down_marks_the_copy_failed_and_delete_refuses(make_app, pg_cluster, source_db, s3_server):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db), MINIO_ENDPOINT=f"127.0.0.1:{reserve_port()}",
                   MINIO_ACCESS_KEY="k", MINIO_SECRET_KEY="s")
    add_user(app)
    client = app.test_client()
    sign_in(client)

    create_through_page(client, source_db)
    job = only_job(app)

    detail = text(client.get(f"/backups/{job.backup_id}"))
    assert "MinIO: failed" in detail and "cannot reach S3" in detail
    assert job.status == "completed" and "s3 copy failed" in job.log
