"""Faults of the worker (issue 5: 6, 7, 13), with real gunicorn and worker processes."""
import signal
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import pytest

from devtools.localservers import wait_until
from tests.web_helpers import EMAIL, TableLock

pytestmark = pytest.mark.integration


def test_06_a_worker_killed_mid_backup_leaves_an_interrupted_job_and_no_partial_file(
        live_app, pg_cluster, source_db, tmp_path):
    """Fault 6: worker killed mid-backup → interrupted on the next start, partial removed."""
    token = live_app.flask("users", "token", EMAIL).strip()
    backup_dir = tmp_path / "backups"
    lock = TableLock(pg_cluster, source_db, "orders")  # pg_dump will wait on it, mid-job
    try:
        job_id = live_app.api("POST", "/api/backups", token)["job_id"]
        wait_until(lambda: list(backup_dir.glob("*.partial")), 30, "the dump")
        job = live_app.api("GET", f"/api/jobs/{job_id}", token)
        assert (job["status"], job["phase"]) == ("running", "dumping")

        live_app.worker.send_signal(signal.SIGKILL)
        live_app.worker.wait(timeout=10)
        assert live_app.api("GET", f"/api/jobs/{job_id}", token)["status"] == "running", "nobody noticed yet"

        live_app.start_worker()
        wait_until(lambda: live_app.api("GET", f"/api/jobs/{job_id}", token)["status"] != "running", 30,
                   "the new worker's recovery")
    finally:
        lock.release()

    job = live_app.api("GET", f"/api/jobs/{job_id}", token)
    assert job["status"] == "interrupted" and "stopped while the job was running" in job["error"]
    assert not list(backup_dir.glob("*.partial"))
    backup = live_app.api("GET", f"/api/backups/{job['backup_id']}", token)
    assert backup["status"] == "failed"

    # The target is free again: a new backup runs to the end on the new worker.
    second = live_app.api("POST", "/api/backups", token)["job_id"]
    wait_until(lambda: live_app.api("GET", f"/api/jobs/{second}", token)["status"] == "completed", 30,
               "the second backup")


def test_07_a_worker_killed_mid_restore_says_the_target_may_be_partial(live_app, pg_cluster, source_db):
    """Fault 7: worker killed mid-restore in place → job interrupted; the message warns about the target.
    (A restore beside the target never touches it before the swap: see test_recovery_of_a_restore_….)"""
    token = live_app.flask("users", "token", EMAIL).strip()
    created = live_app.api("POST", "/api/backups", token)["job_id"]
    wait_until(lambda: live_app.api("GET", f"/api/jobs/{created}", token)["status"] == "completed", 30, "backup")
    backup_id = live_app.api("GET", f"/api/jobs/{created}", token)["backup_id"]
    lock = TableLock(pg_cluster, source_db, "orders")  # pg_restore --clean waits on it, mid-restore
    try:
        job_id = live_app.api("POST", f"/api/backups/{backup_id}/restore", token,
                              {"confirm": source_db, "in_place": True})["job_id"]
        wait_until(lambda: live_app.api("GET", f"/api/jobs/{job_id}", token)["phase"] == "restoring", 30,
                   "the restore")
        live_app.worker.send_signal(signal.SIGKILL)
        live_app.worker.wait(timeout=10)
        live_app.start_worker()
        wait_until(lambda: live_app.api("GET", f"/api/jobs/{job_id}", token)["status"] != "running", 30,
                   "the new worker's recovery")
    finally:
        lock.release()

    job = live_app.api("GET", f"/api/jobs/{job_id}", token)
    assert job["status"] == "interrupted"
    assert "may be partially restored" in job["error"] and "run the restore again" in job["error"]
    assert live_app.api("GET", f"/api/backups/{backup_id}", token)["status"] == "completed", "the backup stays"


def test_13_twenty_concurrent_creates_run_one_job_and_lose_nothing(live_app, pg_cluster, source_db):
    """Fault 13: 20 concurrent create requests for one target → one job at a time, no lost or extra rows."""
    token = live_app.flask("users", "token", EMAIL).strip()
    lock = TableLock(pg_cluster, source_db, "orders")  # keeps the first job running while the others arrive

    def post(_):
        try:
            return 202, live_app.api("POST", "/api/backups", token)["job_id"]
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
            exc.close()
            return exc.code, body

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(post, range(20)))
    finally:
        lock.release()

    accepted = [job_id for code, job_id in answers if code == 202]
    refused = [body for code, body in answers if code == 409]
    assert len(accepted) == 1 and len(refused) == 19, [a for a in answers if a[0] != 409]
    assert all("already" in body for body in refused)
    wait_until(lambda: live_app.api("GET", f"/api/jobs/{accepted[0]}", token)["status"] == "completed", 30, "job")
    backups = live_app.api("GET", "/api/backups", token)
    assert len(backups) == 1 and backups[0]["status"] == "completed"
