"""Scale-out: jobs through Redis, shared by three `flask worker` processes."""
import signal
import socket
import sqlite3
from pathlib import Path

import pytest

from devtools.localservers import RedisServer, wait_until
from tests.conftest import fill_shop, unique_name
from tests.helpers import new_key
from tests.web_helpers import BIN, EMAIL, LiveApp, TableLock, live_env

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway Redis on loopback (Debian's redis-server; `make test` installs it)."""
    with RedisServer(tmp_path / "redis") as redis:
        yield redis.url


@pytest.fixture
def ten_databases(pg_cluster):
    names = [unique_name("fleet") for _ in range(10)]
    for name in names:
        pg_cluster.createdb(name)
        fill_shop(pg_cluster, name, rows=50)
    yield names
    for name in names:
        pg_cluster.dropdb(name)


@pytest.fixture
def fleet(tmp_path, pg_cluster, source_db, s3_settings, redis_url, catalog_url):
    """The web app and three `flask worker` processes sharing a Redis queue and a SQLite catalog,
    looking at what is due (and at dead workers' jobs) every second."""
    env = live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=pg_cluster.url(source_db), APP_ENCRYPTION_KEY=new_key(),
                   REDIS_URL=redis_url, SCHEDULER_INTERVAL=1, **s3_settings)
    app = LiveApp(env, tmp_path).start()
    app.workers = [app.worker] + [app._spawn(f"worker{n}", str(BIN / "flask"), "worker", "--workers", "1")
                                  for n in (2, 3)]
    app.token = app.flask("users", "token", EMAIL).strip()
    yield app
    for process in app.workers:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
    app.stop()


def job_workers(catalog: Path) -> dict[str, str]:
    """job id → the host:pid of the worker that ran it."""
    with sqlite3.connect(catalog) as db:
        return dict(db.execute("SELECT id, worker FROM jobs"))


def test_three_workers_share_ten_targets_through_redis(fleet, tmp_path, pg_cluster, ten_databases):
    for name in ten_databases:
        fleet.flask("targets", "add", name, "--url", pg_cluster.url(name))

    # The first two dumps wait on a lock until both are running: a worker runs one job at a time,
    # so two were taken by two workers, while the third ran the others.
    locks = [TableLock(pg_cluster, name, "orders") for name in ten_databases[:2]]
    try:
        job_ids = [fleet.api("POST", "/api/backups", fleet.token, {"database": name})["job_id"]
                   for name in ten_databases]
        wait_until(lambda: [fleet.api("GET", f"/api/jobs/{j}", fleet.token)["phase"] for j in job_ids[:2]]
                   == ["dumping", "dumping"], 60, "two dumps waiting at once")
    finally:
        for lock in locks:
            lock.release()
    wait_until(lambda: all(fleet.api("GET", f"/api/jobs/{j}", fleet.token)["status"] in ("completed", "failed")
                           for j in job_ids), 120, "ten backups")
    jobs = [fleet.api("GET", f"/api/jobs/{j}", fleet.token) for j in job_ids]
    backups = fleet.api("GET", "/api/backups", fleet.token)

    assert [j["status"] for j in jobs] == ["completed"] * 10, [j["error"] for j in jobs]
    assert sorted(b["database"] for b in backups) == sorted(ten_databases), "one backup per target, none twice"
    assert all(b["status"] == "completed" for b in backups)
    ran_by = job_workers(tmp_path / "catalog.db")
    assert ran_by[job_ids[0]] != ran_by[job_ids[1]], "the jobs were shared"


def test_a_worker_killed_mid_job_is_noticed_by_the_others_without_a_restart(fleet, tmp_path, pg_cluster,
                                                                            source_db):
    lock = TableLock(pg_cluster, source_db, "orders")  # pg_dump waits on it: the job stays running
    try:
        job_id = fleet.api("POST", "/api/backups", fleet.token)["job_id"]
        wait_until(lambda: list((tmp_path / "backups").glob("*.partial")), 30, "the dump")
        pid = int(job_workers(tmp_path / "catalog.db")[job_id].rpartition(":")[2])
        victim = next(process for process in fleet.workers if process.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)

        wait_until(lambda: fleet.api("GET", f"/api/jobs/{job_id}", fleet.token)["status"] != "running", 30,
                   "a live worker's tick")
    finally:
        lock.release()

    job = fleet.api("GET", f"/api/jobs/{job_id}", fleet.token)
    assert job["status"] == "interrupted" and f"the worker ({socket.gethostname()}:{pid}) stopped" in job["error"]
    assert fleet.api("GET", f"/api/backups/{job['backup_id']}", fleet.token)["status"] == "failed"
    assert not list((tmp_path / "backups").glob("*.partial"))
    assert all(process.poll() is None for process in fleet.workers if process is not victim), "no restart"

    again = fleet.api("POST", "/api/backups", fleet.token)["job_id"]
    wait_until(lambda: fleet.api("GET", f"/api/jobs/{again}", fleet.token)["status"] == "completed", 60,
               "the next backup, on the workers left")
