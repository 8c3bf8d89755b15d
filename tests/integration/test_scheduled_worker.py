"""The scheduler in a real `flask worker` process (SCHEDULER_INTERVAL=1): two targets backed up
on their schedules, a scheduled verify, the prune job and the sync job after S3 comes back.

The schedules are yearly crons, so nothing fires by itself while a test runs; each test drives
the clock by moving a next-run time into the past, as if that time had come.
"""
from datetime import timedelta

import pytest

from backup_app import wiring
from backup_app.adapters.local import sha256_of
from backup_app.extensions import db
from backup_app.models import Backup, Job, PeriodicRun, Target, utcnow
from backup_app.services import targets as target_service
from devtools.localservers import wait_until
from tests.helpers import add_target, age_backups, copy_status, create, invoke, sha256_file, show

pytestmark = pytest.mark.integration

YEARLY = "0 0 1 1 *"


def make_due(app, model, key, column: str = "next_run_at") -> None:
    """Move a next-run time just into the past (waiting for the worker to have planned it)."""
    def planned() -> bool:
        with app.app_context():
            row = db.session.get(model, key)
            return row is not None and getattr(row, column) is not None
    wait_until(planned, 30, f"{key}'s {column}")
    with app.app_context():
        setattr(db.session.get(model, key), column, utcnow() - timedelta(seconds=1))
        db.session.commit()


def target_id(app, name: str) -> int:
    with app.app_context():
        return db.session.query(Target).filter_by(name=name).one().id


def jobs_of(app, kind: str, database: str | None = None) -> list[Job]:
    with app.app_context():
        query = db.session.query(Job).filter_by(kind=kind)
        found = (query.filter_by(database=database) if database else query).order_by(Job.created_at).all()
        db.session.expunge_all()
        return found


def finished(app, kind: str, database: str | None = None, count: int = 1):
    """A check for wait_until: `count` jobs of this kind have ended."""
    return lambda: len([j for j in jobs_of(app, kind, database) if not j.active]) >= count


def test_scheduled_backups_verify_and_prune_run_in_the_worker(make_app, start_worker, pg_cluster, source_db,
                                                              other_db, s3_settings, key, backup_dir, s3):
    # Only what the test makes due runs: no prune or sync of the default schedules at 03:30 or every 10 minutes.
    settings = {"BACKUP_DATABASE_URL": pg_cluster.url(source_db), "APP_ENCRYPTION_KEY": key,
                "PRUNE_SCHEDULE": YEARLY, "SYNC_SCHEDULE": "", **s3_settings}
    app = make_app(**settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    add_target(runner, "other", pg_cluster.url(other_db), "--schedule", YEARLY, "--keep-days", "30",
               "--keep-last", "0")
    with app.app_context():
        target_service.update_target(db.session, source_db,
                                     target_service.TargetSettings(schedule=YEARLY, verify_schedule=YEARLY), None)
    for name in (source_db, "other"):
        make_due(app, Target, target_id(app, name))

    start_worker(**settings)
    wait_until(lambda: finished(app, "create", source_db)() and finished(app, "create", "other")(), 60,
               "the two scheduled backups")

    for name in (source_db, "other"):
        [job] = jobs_of(app, "create", name)
        assert job.status == "completed", job.error
        assert copy_status(show(runner, job.backup_id)) == {"local": "present", "s3": "present"}
    with app.app_context():
        assert all(t.next_run_at.year > utcnow().year for t in db.session.query(Target)), "moved to next year"

    # The verify schedule of source_db: its newest backup restored into a scratch database.
    make_due(app, Target, target_id(app, source_db), "verify_next_run_at")
    wait_until(finished(app, "verify"), 60, "the scheduled verify")
    [verify] = jobs_of(app, "verify")
    assert verify.status == "completed" and "restorable, 2 tables, 4000 rows" in verify.result
    assert verify.backup_id == jobs_of(app, "create", source_db)[0].backup_id

    # The prune: other's first backup is 40 days old and other keeps none by count (its newest,
    # made now, is kept whatever the policy).
    doomed = jobs_of(app, "create", "other")[0].backup_id
    with app.app_context():
        doomed_file = db.session.get(Backup, doomed).filename
    newest = create(runner, "--database", "other")
    age_backups(app, {doomed: 40})
    make_due(app, PeriodicRun, "prune")
    wait_until(finished(app, "prune"), 60, "the prune job")

    [prune] = jobs_of(app, "prune")
    assert (prune.status, prune.result) == ("completed", "deleted 1 backup(s)")
    assert f"deleted {doomed_file} (older than 30 days and not among the newest 0 good backups)" in prune.log
    assert s3.stat(doomed_file) is None and not (backup_dir / doomed_file).exists()
    with app.app_context():
        assert sorted(b.id for b in db.session.query(Backup) if b.format != "globals") == sorted(
            [jobs_of(app, "create", source_db)[0].backup_id, newest["id"]])
        # A scheduled run also records its server's roles, for `restore --create-roles`.
        assert {b.database for b in db.session.query(Backup) if b.format == "globals"} == {source_db, "other"}


def test_the_sync_job_uploads_once_s3_is_back(make_app, start_worker, pg_cluster, source_db, tmp_path, start_store):
    server = start_store()
    settings = {"BACKUP_DATABASE_URL": pg_cluster.url(source_db), "SYNC_SCHEDULE": YEARLY, "PRUNE_SCHEDULE": "",
                **server.settings()}
    app = make_app(**settings)
    runner = app.test_cli_runner()
    invoke(runner, "storage", "init")
    server.stop()
    backup = create(runner)
    assert copy_status(backup) == {"local": "present", "s3": "failed"}

    start_worker(**settings)
    make_due(app, PeriodicRun, "sync")
    wait_until(finished(app, "sync"), 60, "the sync job while S3 is down")
    [down] = jobs_of(app, "sync")
    assert down.status == "failed" and f"cannot reach S3 at {server.endpoint}" in down.error
    assert copy_status(show(runner, backup["id"])) == {"local": "present", "s3": "failed"}
    assert sha256_file(tmp_path / "backups" / backup["filename"]) == backup["sha256"], "nothing lost"

    server.restart()
    make_due(app, PeriodicRun, "sync")
    wait_until(finished(app, "sync", count=2), 60, "the sync job once S3 is back")

    up = jobs_of(app, "sync")[1]
    assert (up.status, up.result) == ("completed", "uploaded 1, fetched 0")
    assert f"uploaded {backup['filename']}" in up.log
    assert copy_status(show(runner, backup["id"])) == {"local": "present", "s3": "present"}
    with app.app_context(), wiring.s3_stores()[0].open(backup["filename"]) as stream:
        assert sha256_of(stream) == backup["sha256"]
