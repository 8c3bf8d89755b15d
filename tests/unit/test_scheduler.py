"""The worker's scheduler, driven by calling `tick` with a chosen `now`: scheduled backups and
verifies, the prune and the sync are queued once each, busy targets are skipped with a note."""
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from backup_app import wiring
from backup_app.extensions import db
from backup_app.jobs import scheduler
from backup_app.jobs.queue import job_queue
from backup_app.jobs.submit import queue_create
from backup_app.models import Backup, Job, PeriodicRun, Target
from devtools.localservers import reserve_port
from tests.conftest import both_catalogs
from tests.web_helpers import add_backup

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=timezone.utc)


@pytest.fixture
def queued_app(make_app, tmp_path):
    """An app whose jobs stay queued (no worker), with the prune at 03:30 and the sync every 10 minutes."""
    return make_app(HUEY_IMMEDIATE=False, HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))


def add_targets(app, *names: str, **values) -> None:
    """Targets due at NOW every minute (their host is never reached: jobs stay queued)."""
    with app.app_context():
        for name in names:
            settings = {"schedule": "* * * * *", "next_run_at": NOW - timedelta(seconds=30), **values}
            db.session.add(Target(name=name, dbname=name, host="db.example", **settings))
        db.session.commit()


def jobs_of(app, kind: str | None = None) -> list[Job]:
    with app.app_context():
        query = db.session.query(Job).order_by(Job.database)
        found = (query.filter_by(kind=kind) if kind else query).all()
        db.session.expunge_all()
        return found


def tick(app, now=NOW) -> list[str]:
    with app.app_context():
        return scheduler.tick(db.session, now)


def test_due_backups_are_queued_once_and_the_next_run_moves_on(queued_app):
    add_targets(queued_app, "crm", "shop")

    lines = tick(queued_app)
    again = tick(queued_app)

    created = jobs_of(queued_app, "create")
    assert [(job.database, job.status) for job in created] == [("crm", "queued"), ("shop", "queued")]
    assert lines == [f"scheduled backup of {job.database} queued (job {job.id})" for job in created]
    assert again == []
    with queued_app.app_context():
        assert {t.next_run_at for t in db.session.query(Target)} == {NOW.replace(minute=1, second=0)}
    assert len(job_queue(queued_app).huey) == 2, "each on the worker's queue once"


def test_a_busy_target_is_skipped_and_the_skip_noted_in_the_busy_job(queued_app):
    add_targets(queued_app, "crm")
    with queued_app.app_context():
        busy = queue_create(db.session, wiring.dump_spec("crm"))

    [line] = tick(queued_app)

    assert line == (f"scheduled backup of crm skipped: A create job for crm is already queued (job {busy.id}); "
                    "wait for it to finish")
    [job] = jobs_of(queued_app)
    assert job.id == busy.id
    assert "scheduled backup of crm skipped while this job holds postgresql://db.example/crm" in job.log


def test_a_target_that_cannot_be_backed_up_leaves_a_failed_job(queued_app):
    add_targets(queued_app, "secret", encrypt=True)

    [line] = tick(queued_app)

    [job] = jobs_of(queued_app)
    assert (job.kind, job.status, job.database) == ("create", "failed", "secret")
    assert job.error == line == ("scheduled backup of secret could not start: target 'secret' is encrypted "
                                 "but APP_ENCRYPTION_KEY is not set")


def test_a_disabled_schedule_queues_nothing(queued_app):
    add_targets(queued_app, "crm", schedule_enabled=False)
    assert tick(queued_app) == [] and jobs_of(queued_app) == []


def test_scheduled_verify_takes_the_newest_completed_backup(queued_app):
    add_targets(queued_app, "crm", "empty", schedule=None, next_run_at=None, verify_schedule="0 * * * *",
                verify_next_run_at=NOW - timedelta(minutes=1))
    add_backup(queued_app, backup_id="older", database="crm", created_at=NOW - timedelta(days=1))
    add_backup(queued_app, backup_id="newest", database="crm", created_at=NOW - timedelta(hours=1))

    lines = tick(queued_app)

    [verify] = jobs_of(queued_app, "verify")
    assert (verify.database, verify.backup_id, verify.status) == ("crm", "newest", "queued")
    assert verify.target == "scratch copy of newest on db.example:5432"
    assert lines == [f"scheduled verify of crm queued (job {verify.id})",
                     "scheduled verify of empty skipped: it has no completed backup yet"]
    with queued_app.app_context():
        crm = db.session.query(Target).filter_by(name="crm").one()
        assert crm.verify_next_run_at == NOW.replace(hour=13, minute=0, second=0)


def test_prune_is_planned_then_queued_once_when_due(queued_app):
    assert tick(queued_app) == [], "the first tick only plans the next prune"
    with queued_app.app_context():
        planned = db.session.get(PeriodicRun, "prune").next_run_at
    assert planned == datetime(2026, 11, 26, 3, 30, tzinfo=timezone.utc)

    lines = tick(queued_app, planned + timedelta(seconds=5))
    again = tick(queued_app, planned + timedelta(seconds=10))

    [prune] = jobs_of(queued_app, "prune")
    assert lines == [f"prune queued (job {prune.id})"] and again == []
    assert (prune.database, prune.target) == ("all targets", "all backups")


def test_sync_is_queued_only_when_a_copy_is_missing(make_app, tmp_path):
    app = make_app(HUEY_IMMEDIATE=False, HUEY_SQLITE_PATH=str(tmp_path / "huey.db"), MINIO_ENDPOINT="127.0.0.1:1",
                   SYNC_SCHEDULE="*/10 * * * *", PRUNE_SCHEDULE="")
    add_backup(app, backup_id="both", s3_copy=True)
    tick(app)
    assert tick(app, NOW + timedelta(minutes=10)) == [], "every backup has both copies"

    add_backup(app, backup_id="localonly")
    [line] = tick(app, NOW + timedelta(minutes=20))

    [sync] = jobs_of(app, "sync")
    assert line == f"sync queued (job {sync.id})"
    assert jobs_of(app, "prune") == [], "an empty PRUNE_SCHEDULE turns the prune off"


def test_prune_and_sync_share_one_slot(make_app, tmp_path):
    app = make_app(HUEY_IMMEDIATE=False, HUEY_SQLITE_PATH=str(tmp_path / "huey.db"), MINIO_ENDPOINT="127.0.0.1:1",
                   SYNC_SCHEDULE="30 3 * * *")
    add_backup(app, backup_id="localonly")
    tick(app)

    lines = tick(app, datetime(2026, 11, 26, 3, 30, 5, tzinfo=timezone.utc))

    [prune] = jobs_of(app)
    assert lines == [f"prune queued (job {prune.id})",
                     f"sync skipped: A prune job for all targets is already queued (job {prune.id}); "
                     "wait for it to finish"]


@both_catalogs
def test_concurrent_ticks_queue_each_due_run_once(queued_app):
    add_targets(queued_app, "crm", "shop")
    start = threading.Barrier(4)
    errors = []

    def worker_tick():
        try:
            start.wait()
            tick(queued_app)
        except Exception as exc:  # reported below: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=worker_tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [job.database for job in jobs_of(queued_app, "create")] == ["crm", "shop"]
    with queued_app.app_context():
        assert [run.name for run in db.session.query(PeriodicRun)] == ["prune"], "planned once (no S3: no sync)"


def test_a_prune_that_cannot_reach_s3_fails_and_deletes_nothing(make_app):
    app = make_app(MINIO_ENDPOINT=f"127.0.0.1:{reserve_port()}", MINIO_ACCESS_KEY="k", MINIO_SECRET_KEY="s",
                   SYNC_SCHEDULE="")
    add_backup(app, backup_id="old", s3_copy=True, created_at=NOW - timedelta(days=40))
    add_backup(app, backup_id="new", created_at=NOW - timedelta(days=1))
    with app.app_context():
        db.session.add(Target(name="shop", dbname="shop", keep_days=30, keep_last=1))
        db.session.commit()
    tick(app)

    tick(app, datetime(2026, 11, 26, 3, 30, 5, tzinfo=timezone.utc))  # runs the job here: huey immediate mode

    [prune] = jobs_of(app, "prune")
    assert (prune.status, prune.phase) == ("failed", "failed")
    assert prune.error.startswith("could not delete old: cannot reach S3")
    with app.app_context():
        assert db.session.get(Backup, "old") is not None
    assert (Path(app.config["BACKUP_DIR"]) / "backup-shop-old.dump").exists()
