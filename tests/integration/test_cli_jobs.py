"""`flask backup create/restore` run as jobs in the foreground: they hold their target like a
worker's job, so a second one for the same database is refused and nothing is lost."""
import os
import socket

import pytest

from backup_app.core.conninfo import ConnInfo
from backup_app.extensions import db
from backup_app.jobs.slots import database_slot
from backup_app.models import Backup, Job
from tests.helpers import all_jobs, count_rows, create, dead_pid, error_line, hold_target, invoke, running_job

pytestmark = pytest.mark.integration


def test_create_and_restore_leave_completed_jobs(app, runner, pg_cluster, source_db):
    backup = create(runner)
    pg_cluster.psql("DELETE FROM orders", source_db)
    invoke(runner, "backup", "restore", backup["id"], "--yes")

    made, restored = all_jobs(app)
    assert (made.kind, made.status, made.backup_id, made.worker) == \
        ("create", "completed", backup["id"], f"{socket.gethostname()}:{os.getpid()}")
    assert "dumping postgresql://" in made.log and made.result.startswith(f"completed {backup['filename']}")
    assert (restored.kind, restored.status, restored.backup_id) == ("restore", "completed", backup["id"])
    assert count_rows(pg_cluster, source_db) == 3000


def test_a_busy_target_refuses_create_and_restore_and_nothing_is_lost(app, runner, pg_cluster, source_db,
                                                                     backup_dir):
    backup = create(runner)
    busy = hold_target(app, pg_cluster.url(source_db))
    pg_cluster.psql("DELETE FROM orders WHERE id > 100", source_db)

    refused = invoke(runner, "backup", "create", "--json", ok=False)
    assert error_line(refused) == (f"Error: A restore job for {source_db} is already running (job {busy}); "
                                   "wait for it to finish")
    assert refused.stdout == ""
    refused = invoke(runner, "backup", "restore", backup["id"], "--yes", ok=False)
    assert f"A restore job for {source_db} is already running (job {busy})" in error_line(refused)

    assert count_rows(pg_cluster, source_db) == 100, "the target was not touched"
    with app.app_context():
        assert [b.id for b in db.session.query(Backup)] == [backup["id"]]
    assert sorted(p.name for p in backup_dir.iterdir()) == [backup["filename"]]
    assert [(job.kind, job.status) for job in all_jobs(app)] == [("create", "completed"), ("restore", "running")], \
        "no job row for the refusals"


@pytest.mark.parametrize("spelling", ["localhost", "sslmode", "another user"])
def test_a_database_is_one_slot_however_its_url_spells_it(app, runner, pg_cluster, source_db, spelling):
    """localhost or 127.0.0.1, other parameters, another user: the same database on the same server."""
    pg_cluster.psql("DO $$ BEGIN CREATE ROLE other_reader LOGIN PASSWORD 'reader'; "
                    "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    url = {"localhost": pg_cluster.url(source_db).replace("@127.0.0.1:", "@localhost:"),
           "sslmode": pg_cluster.url(source_db) + "?sslmode=disable",
           "another user": f"postgresql://other_reader:reader@127.0.0.1:{pg_cluster.port}/{source_db}"}[spelling]
    busy = hold_target(app, url)

    refused = invoke(runner, "backup", "create", ok=False)

    assert error_line(refused) == (f"Error: A restore job for {source_db} is already running (job {busy}); "
                                   "wait for it to finish")


def test_a_job_left_by_a_killed_command_does_not_hold_the_target(app, runner, pg_cluster, source_db):
    dead = hold_target(app, pg_cluster.url(source_db), worker=f"{socket.gethostname()}:{dead_pid()}")

    backup = create(runner)

    assert backup["status"] == "completed"
    stale = next(job for job in all_jobs(app) if job.id == dead)
    assert stale.status == "interrupted" and "stopped while the job was running" in stale.error


def test_a_failed_dump_is_the_commands_error_and_a_failed_job(make_app, pg_cluster, source_db):
    app = make_app(BACKUP_DATABASE_URL=pg_cluster.url(source_db, password="wrong-password"))

    result = invoke(app.test_cli_runner(), "backup", "create", ok=False)

    assert "password authentication failed" in error_line(result)
    [job] = all_jobs(app)
    assert job.status == "failed" and "password authentication failed" in job.error


def end(app, job_id: str) -> None:
    with app.app_context():
        db.session.get(Job, job_id).status = "completed"
        db.session.commit()


def test_verify_prune_sync_delete_and_download_take_the_slots_the_worker_holds(app, runner, source_db, backup_dir,
                                                                              tmp_path):
    backup = create(runner)
    sync = running_job(app, kind="sync", database="all targets", target="all backups", slot="all backups")
    for args in (["backup", "prune"], ["backup", "sync"], ["backup", "delete", backup["id"], "--yes"]):
        refused = invoke(runner, *args, ok=False)
        assert error_line(refused) == (f"Error: A sync job for all targets is already running (job {sync}); "
                                       "wait for it to finish"), args
    end(app, sync)
    verify = running_job(app, kind="verify", database=source_db, target="scratch", slot=f"backup {backup['id']}",
                     backup_id=backup["id"])
    refused = invoke(runner, "backup", "verify", backup["id"], ok=False)
    assert error_line(refused) == (f"Error: A verify job for {source_db} is already running (job {verify}); "
                                   "wait for it to finish")

    refused = invoke(runner, "backup", "delete", backup["id"], "--yes", ok=False)
    assert error_line(refused) == (f"Error: A verify job is reading backup {backup['id']} (job {verify}); "
                                   "wait for it to finish")
    assert (backup_dir / backup["filename"]).exists(), "nothing deleted"
    end(app, verify)

    invoke(runner, "backup", "download", backup["id"], "--output", str(tmp_path / "copy.dump"))
    invoke(runner, "backup", "delete", backup["id"], "--yes")
    kinds = [(job.kind, job.status) for job in all_jobs(app)]
    assert ("download", "completed") in kinds and ("delete", "completed") in kinds


def test_a_database_that_does_not_exist_yet_has_the_slot_it_will_have(pg_cluster, source_db):
    """A restore into a new database holds the slot a backup of it will want once it exists."""
    new = ConnInfo.from_url(pg_cluster.url(source_db + "_new"))
    before = database_slot(new)
    pg_cluster.createdb(new.dbname)
    try:
        assert database_slot(new) == before
        assert before.startswith("system ")
    finally:
        pg_cluster.dropdb(new.dbname)


@pytest.mark.parametrize("catalog_url", ["postgresql"], indirect=True)
def test_the_catalog_database_is_never_restored_over(app, runner, catalog_url):
    backup = create(runner)
    catalog = catalog_url.replace("postgresql+psycopg://", "postgresql://", 1)

    refused = invoke(runner, "backup", "restore", backup["id"], "--target-url", catalog, "--yes", ok=False)

    assert "is this app's own catalog database: restoring over it would replace the records" in error_line(refused)
    assert invoke(runner, "backup", "show", backup["id"]).exit_code == 0, "the catalog is as it was"
