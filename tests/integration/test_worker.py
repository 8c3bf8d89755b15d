"""The real worker process: a worker killed mid-dump leaves a job the next worker marks interrupted."""
import signal
import time

import pytest

from backup_app.localservers import wait_until
from tests.web_helpers import EMAIL, TableLock

pytestmark = pytest.mark.integration


def test_a_worker_killed_mid_job_leaves_an_interrupted_job_and_no_partial_file(live_app, pg_cluster, source_db,
                                                                              tmp_path):
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
        time.sleep(0.5)
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
