"""Verify from the backup page, the verify badges on the list, storage usage, and "Test
connection" on the targets page, against real PostgreSQL and SeaweedFS (jobs run inside the
request: huey immediate mode)."""
import re

import pytest

from backup_app.adapters.local import sha256_of
from backup_app.extensions import db
from backup_app.models import Job
from devtools.localservers import DEBIAN_PG_BIN
from tests.integration.test_web_flow import create_through_page, only_job
from tests.web_helpers import add_backup, add_user, sign_in, submit, text

pytestmark = pytest.mark.integration


def verify_through_page(client, backup_id: str):
    response = submit(client, f"/backups/{backup_id}/verify", form_url=f"/backups/{backup_id}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/jobs/?highlight=")
    return response


def last_job(app) -> Job:
    with app.app_context():
        job = db.session.query(Job).order_by(Job.created_at.desc()).first()
        db.session.expunge(job)
        return job


def test_verify_from_the_page_shows_restorable_on_the_list_and_its_history(app, client, source_db):
    create_through_page(client, source_db)
    backup_id = only_job(app).backup_id

    verify_through_page(client, backup_id)

    job = last_job(app)
    assert (job.kind, job.status, job.phase, job.backup_id) == ("verify", "completed", "done", backup_id)
    assert re.fullmatch(rf"backup-{source_db}-.+: restorable, 2 tables, 4000 rows, in \d+\.\d s", job.result)
    assert "restoring into a scratch database" in job.log
    listing = text(client.get("/"))
    assert "verified restorable just now" in listing
    assert f"<td>{source_db}</td>" in text(client.get("/storage")).split("<tbody>")[1], "usage per target"
    assert 'hx-get="/storage/table"' in listing, "the list loads the same table after itself"
    assert f"<td>{source_db}</td>" in text(client.get("/storage/table")).split("<tbody>")[1]
    detail = text(client.get(f"/backups/{backup_id}"))
    history = detail.split("<h2>Verifications</h2>")[1].split("<h2>")[0]
    assert "passed" in history and "<td>2</td>" in history and "<td>4,000</td>" in history
    assert "public.orders" in history and "3,000" in history
    assert "verify" in text(client.get("/jobs/"))


def test_a_corrupt_copy_fails_verification_on_the_list_and_loses_nothing(app, client, source_db, backup_dir, s3):
    create_through_page(client, source_db)
    with app.app_context():
        backup = only_job(app).backup
        filename, sha256 = backup.filename, backup.sha256
    with open(backup_dir / filename, "r+b") as local_file:
        local_file.seek(100)
        local_file.write(b"corrupted")

    verify_through_page(client, backup.id)

    job = last_job(app)
    assert job.status == "failed"
    assert job.error.startswith(f"{filename} failed verification: local copy failed: SHA-256 mismatch")
    listing = text(client.get("/"))
    assert "verify failed just now" in listing and "local copy failed: SHA-256 mismatch" in listing
    assert "Local: failed" in listing and "MinIO: present" in listing
    with s3.open(filename) as stream:
        assert sha256_of(stream) == sha256, "the good copy is untouched"


def test_verify_needs_a_configured_target(bare_app, bare_client):
    add_backup(bare_app)

    response = submit(bare_client, "/backups/b1/verify", form_url="/backups/b1", follow_redirects=True)

    assert "Unknown database &#39;shop&#39;" in text(response)
    with bare_app.app_context():
        assert db.session.query(Job).count() == 0


def test_test_connection_names_the_server_and_the_pg_dump(app, client, source_db, pg_cluster):
    response = submit(client, f"/targets/{source_db}/test", form_url="/targets/", follow_redirects=True)
    version = pg_cluster.psql("SHOW server_version").split()[0]
    assert f"{source_db}: PostgreSQL {version} (pg_dump 15." in text(response)


def test_test_connection_explains_a_server_newer_than_every_pg_dump(make_app, pg18_server):
    app = make_app(BACKUP_DATABASE_URL=pg18_server.url("postgres"), PG_BIN_DIR=DEBIAN_PG_BIN)
    add_user(app)
    client = app.test_client()
    sign_in(client)

    response = submit(client, "/targets/postgres/test", form_url="/targets/", follow_redirects=True)

    version = pg18_server.psql("SHOW server_version").split()[0]
    assert (f"postgres: the server runs PostgreSQL {version}, newer than every pg_dump found (15."
            in text(response))
    assert "install postgresql-client-18" in text(response)
