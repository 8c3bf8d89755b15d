"""The job queue's rules on the catalog: one active job per target, recovery after a dead worker."""
import os
import signal
import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from huey import RedisHuey, SqliteHuey

from backup_app import wiring
from backup_app.adapters.processes import track
from backup_app.core.conninfo import ConnInfo
from backup_app.errors import JobConflict
from backup_app.extensions import db
from backup_app.jobs import records, recovery
from backup_app.jobs.queue import ServerShare, job_queue
from backup_app.jobs.records import PROGRESS_INTERVAL, ProgressRecorder, claim, finish, heartbeat, jobs_query
from backup_app.jobs.recovery import STALE_HEARTBEATS, interrupted_error, recover_interrupted_jobs
from backup_app.jobs.runners import run_job
from backup_app.jobs.scheduler import tick
from backup_app.jobs.submit import queue_create
from backup_app.models import COMPLETED, CREATE, RESTORE, RUNNING, Backup, Job, Verification, utcnow
from backup_app.services.backups.queries import backups_query
from backup_app.services.login_throttle import throttle_wait
from backup_app.services.targets import DumpSpec
from devtools.localservers import wait_until
from tests.helpers import dead_pid
from tests.web_helpers import add_user, sign_in

SHOP = DumpSpec("shop", ConnInfo.from_url("postgresql://app@db.example:5432/shop"))


@pytest.fixture
def queued_app(make_app, tmp_path):
    """An app whose jobs are queued in SQLite and never run (no worker)."""
    return make_app(HUEY_IMMEDIATE=False, HUEY_SQLITE_PATH=str(tmp_path / "huey.db"))


def test_queue_is_sqlite_by_default_and_redis_with_redis_url(make_app, tmp_path):
    sqlite = job_queue(make_app(HUEY_IMMEDIATE=False, HUEY_SQLITE_PATH=str(tmp_path / "q.db"))).huey
    assert isinstance(sqlite, SqliteHuey) and sqlite.storage.filename == str(tmp_path / "q.db")
    redis = job_queue(make_app(HUEY_IMMEDIATE=False, REDIS_URL="redis://127.0.0.1:1/3")).huey
    assert isinstance(redis, RedisHuey)
    assert redis.storage.conn.connection_pool.connection_kwargs["db"] == 3


def test_a_second_job_for_the_same_target_is_refused(queued_app):
    with queued_app.app_context():
        first = queue_create(db.session, SHOP)
        assert first.status == "queued" and len(job_queue(queued_app).huey) == 1

        with pytest.raises(JobConflict, match=f"A create job for shop is already queued \\(job {first.id}\\)"):
            queue_create(db.session, SHOP)

        other = DumpSpec("crm", ConnInfo.from_url("postgresql://app@db.example:5432/crm"))
        assert queue_create(db.session, other).status == "queued", "other targets are free"
        db.session.execute(db.update(Job).where(Job.id == first.id).values(status=COMPLETED))
        db.session.commit()
        assert queue_create(db.session, SHOP).status == "queued", "free again once it ended"


def test_a_job_runs_once_only(queued_app):
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        assert claim(job.id) is True
        assert claim(job.id) is False
        run_job(job.id)  # a second delivery of the same message does nothing
        db.session.refresh(job)
        assert job.status == RUNNING and job.phase == "starting"


def test_progress_is_written_at_most_twice_a_second(queued_app):
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        progress = ProgressRecorder(job.id)
        progress(100)
        progress(200)
        db.session.refresh(job)
        assert job.bytes_done == 100
        progress._last -= PROGRESS_INTERVAL
        progress(300)
        db.session.refresh(job)
        assert job.bytes_done == 300


def test_a_phase_begins_at_zero_of_its_total_and_the_bytes_not_written_are_kept_for_later(queued_app):
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        progress = ProgressRecorder(job.id)
        progress(300)
        progress.begin("restoring", 1000, "restoring into shop")
        progress(100)  # written at once: a phase's first bytes
        progress(250)  # within PROGRESS_INTERVAL: kept
        db.session.refresh(job)
        assert (job.phase, job.bytes_done, job.bytes_total) == ("restoring", 100, 1000)
        assert job.phase_started_at is not None and "restoring into shop" in job.log
        assert progress.unwritten() == {"bytes_done": 250} and progress.unwritten() == {}
        progress.begin("restoring", 1000, "swapping")  # the same phase: only the log line
        db.session.refresh(job)
        assert job.bytes_total == 1000 and "swapping" in job.log


def running_job(kind: str, worker: str, backup: Backup | None = None) -> Job:
    job = Job(kind=kind, status=RUNNING, database="shop", target=f"postgresql://{worker}/shop",
              slot=f"postgresql://{worker}/shop",
              backup_id=backup.id if backup else None, worker=worker, log="", started_at=utcnow())
    db.session.add(job)
    db.session.commit()
    return job


def test_recovery_marks_dead_workers_jobs_interrupted_and_removes_their_partial_files(queued_app):
    host = socket.gethostname()
    with queued_app.app_context():
        local = wiring.local_storage()
        backup = Backup(id="b1", filename="backup-shop-b1.dump", database="shop", status=RUNNING)
        db.session.add(backup)
        partial = local.path(backup.filename).with_name(backup.filename + ".1a2b3c4d.partial")
        partial.write_bytes(b"half a dump")
        other_partial = local.path("backup-crm-b2.dump").with_name("backup-crm-b2.dump.5e6f7a8b.partial")
        other_partial.write_bytes(b"another worker's dump")

        dead = running_job(CREATE, f"{host}:{dead_pid()}", backup)
        earlier_life = running_job(RESTORE, f"{host}:{os.getpid()}")
        alive = running_job(CREATE, f"{host}:{os.getppid()}")
        elsewhere = running_job(CREATE, f"other-host:{dead_pid()}")

        recovered = recover_interrupted_jobs(db.session, local)

        assert {job.id for job in recovered} == {dead.id, earlier_life.id}
        for job in (dead, earlier_life):
            db.session.refresh(job)
            assert job.status == "interrupted" and job.finished_at is not None
            assert "stopped while the job was running" in job.error
        assert "removed the partial file of backup-shop-b1.dump" in dead.log
        assert not partial.exists() and other_partial.exists()
        assert db.session.get(Backup, "b1").status == "failed"
        for job in (alive, elsewhere):
            db.session.refresh(job)
            assert job.status == RUNNING


def test_a_job_silent_past_its_heartbeats_is_interrupted_by_any_workers_tick(queued_app):
    host = socket.gethostname()
    stale_after = timedelta(seconds=STALE_HEARTBEATS * queued_app.config["JOB_HEARTBEAT_SECONDS"])
    with queued_app.app_context():
        gone_machine = running_job(CREATE, f"other-host:{os.getppid()}")
        gone_machine.heartbeat_at = utcnow() - stale_after - timedelta(seconds=1)
        beating = running_job(CREATE, f"other-host:{dead_pid()}")
        beating.heartbeat_at = utcnow() - stale_after + timedelta(seconds=5)
        dead_here = running_job(RESTORE, f"{host}:{dead_pid()}")
        this_process = running_job(CREATE, f"{host}:{os.getpid()}")
        db.session.commit()

        lines = tick(db.session)

        assert len([line for line in lines if "marked interrupted" in line]) == 2, lines
        for job in (gone_machine, dead_here):
            db.session.refresh(job)
            assert job.status == "interrupted"
            assert f"job {job.id} ({job.kind} of shop) marked interrupted: the worker ({job.worker}) stopped" \
                in "\n".join(lines)
        for job in (beating, this_process):
            db.session.refresh(job)
            assert job.status == RUNNING, "a job whose heartbeat is fresh, or of the ticking process, is alive"


def test_a_running_job_writes_its_heartbeat(queued_app):
    queued_app.config["JOB_HEARTBEAT_SECONDS"] = 0.05
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        assert claim(job.id)
        db.session.refresh(job)
        claimed_at = job.heartbeat_at
        def beaten() -> bool:
            db.session.refresh(job)
            db.session.commit()
            return job.heartbeat_at > claimed_at
        with heartbeat(job.id):
            wait_until(beaten, 10, "a heartbeat")


def test_the_watchdog_kills_a_program_that_moves_no_bytes_and_any_the_job_starts_after(queued_app):
    queued_app.config.update(JOB_HEARTBEAT_SECONDS=0.05, JOB_STALL_SECONDS=0.3)
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        assert claim(job.id)
        with heartbeat(job.id) as watch:
            silent = track(subprocess.Popen(["sleep", "60"]))
            assert silent.wait(timeout=30) == -signal.SIGKILL
            late = track(subprocess.Popen(["sleep", "60"]))
            assert late.wait(timeout=30) == -signal.SIGKILL, "the job is stopped: it starts nothing more"
        assert watch.stalled == ("no progress for 0.3 s while starting: the server at db.example:5432 stopped "
                                 "answering (sleep moved no bytes and was stopped)")


def test_a_program_outside_a_job_has_no_watchdog(queued_app):
    queued_app.config.update(JOB_HEARTBEAT_SECONDS=0.05, JOB_STALL_SECONDS=0.1)
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        assert claim(job.id)
        with heartbeat(job.id) as watch:
            outside = threading.Thread(target=lambda: track(subprocess.Popen(["sleep", "0.5"])).wait())
            outside.start()  # a thread of its own (a WAL receiver's): not the job's
            outside.join()
        assert watch.stalled is None


def test_a_server_gets_all_but_one_of_a_workers_threads():
    share = ServerShare(3)
    assert [share.take("db1:5432") for _ in range(3)] == [True, True, False]
    assert share.take("db2:5432"), "another server still gets a thread"
    share.give_back("db1:5432")
    assert share.take("db1:5432")
    single = ServerShare(1)
    assert single.take("db1:5432") and not single.take("db1:5432"), "one thread: one job, as before"


def test_jobs_are_listed_newest_first_and_filtered(queued_app):
    with queued_app.app_context():
        old = Job(kind=CREATE, status=COMPLETED, database="a", target="a", slot="a", log="",
                  created_at=utcnow() - timedelta(days=1))
        db.session.add(old)
        db.session.commit()
        new = queue_create(db.session, SHOP)
        assert [job.id for job in db.session.scalars(jobs_query())] == [new.id, old.id]
        assert [job.id for job in db.session.scalars(jobs_query(status=COMPLETED))] == [old.id]
        assert [job.id for job in db.session.scalars(jobs_query(kind=CREATE, database="a"))] == [old.id]


def test_worker_refuses_to_run_in_immediate_mode(make_app):
    result = make_app().test_cli_runner().invoke(args=["worker"])
    assert result.exit_code == 1 and "HUEY_IMMEDIATE is set" in result.output


def test_sign_in_wait_doubles_after_five_failures_up_to_five_minutes():
    assert [throttle_wait(n).total_seconds() for n in (0, 4, 5, 6, 7)] == [0, 0, 2, 4, 8]
    assert throttle_wait(50) == timedelta(minutes=5)


def test_list_query_uses_the_indexes_with_100k_backups(make_app):
    app = make_app()
    with app.app_context():
        start = utcnow()
        db.session.execute(db.insert(Backup), [
            {"id": f"b{n}", "filename": f"f{n}.dump", "database": f"db{n % 20}", "format": "custom",
             "status": ("completed", "failed")[n % 7 == 0], "created_at": start + timedelta(seconds=n)}
            for n in range(100_000)])
        db.session.commit()
        client = app.test_client()
        add_user(app)
        sign_in(client)
        for url in ("/", "/?database=db3", "/?status=failed", "/?page=1500"):  # how fast: `make bench`
            assert client.get(url).status_code == 200, url
        for query in (backups_query(), backups_query("db3"), backups_query(None, "failed")):
            plan = " ".join(str(row) for row in db.session.execute(
                db.text("EXPLAIN QUERY PLAN " + str(query.limit(50).compile(
                    db.engine, compile_kwargs={"literal_binds": True})))))
            assert "USING INDEX" in plan and "TEMP B-TREE" not in plan, plan


def test_heartbeats_are_judged_by_the_catalogs_clock_not_the_machines(queued_app, monkeypatch):
    """A machine whose clock runs two minutes ahead must not take a live job for a dead one."""
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        assert claim(job.id)
        db.session.execute(db.update(Job).where(Job.id == job.id).values(worker="other-host:1"))
        db.session.commit()
        ahead = utcnow() + timedelta(minutes=2)
        for module in (recovery, records):
            monkeypatch.setattr(module, "utcnow", lambda: ahead)

        assert recover_interrupted_jobs(db.session, wiring.local_storage(), starting=False) == []
        db.session.refresh(job)
        assert job.status == RUNNING


def test_a_job_marked_interrupted_is_never_overwritten_as_completed(queued_app):
    with queued_app.app_context():
        job = queue_create(db.session, SHOP)
        assert claim(job.id)
        db.session.execute(db.update(Job).where(Job.id == job.id).values(status="interrupted"))
        db.session.commit()

        finish(job.id, "completed backup-shop.dump", status=COMPLETED, phase="done")

        db.session.refresh(job)
        assert job.status == "interrupted" and "completed backup-shop.dump" not in job.log


def test_a_backup_or_verification_left_running_with_no_live_job_is_failed(queued_app):
    """A process that died before its job row said so (or a backup made outside any job)."""
    with queued_app.app_context():
        orphan = Backup(id="orphan1", filename="backup-shop-orphan1.dump", database="shop", status=RUNNING)
        job = queue_create(db.session, SHOP)
        assert claim(job.id)
        served = Backup(id=job.backup_id, filename="backup-shop-served.dump", database="shop", status=RUNNING)
        db.session.add_all([orphan, served])
        db.session.commit()

        lost_verify = Verification(backup_id=job.backup_id, status=RUNNING, started_at=utcnow())
        db.session.add(lost_verify)
        db.session.commit()

        recover_interrupted_jobs(db.session, wiring.local_storage(), starting=False)

        db.session.expire_all()
        assert db.session.get(Verification, lost_verify.id).status == "failed", "no verify job runs it"
        assert db.session.get(Backup, "orphan1").status == "failed"
        assert "no job is running this backup" in db.session.get(Backup, "orphan1").error
        assert db.session.get(Backup, job.backup_id).status == RUNNING, "its job is alive"


def test_an_interrupted_restore_says_what_it_may_have_left():
    beside = Job(kind=RESTORE, target="postgresql://db/shop", worker="h:1", options={"in_place": False})
    in_place = Job(kind=RESTORE, target="postgresql://db/shop", worker="h:1", options={"in_place": True})

    assert "postgresql://db/shop itself was not changed unless the swap had begun" in interrupted_error(beside)
    assert "_restoring_" in interrupted_error(beside)
    assert "may be partially restored" in interrupted_error(in_place)
