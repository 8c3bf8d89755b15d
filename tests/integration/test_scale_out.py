"""Scale-out: jobs through Redis, shared by three `flask worker` processes."""
import os
import sqlite3
import subprocess

import pytest

from backup_app.localservers import free_port, wait_until
from tests.conftest import fill_shop, unique_name
from tests.helpers import new_key
from tests.web_helpers import BIN, EMAIL, LiveApp

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_url(tmp_path):
    """A throwaway Redis on loopback (Debian's redis-server; `make test` installs it)."""
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    ping = ["redis-cli", "-p", str(port), "ping"]
    wait_until(lambda: subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "PONG", 20, "Redis")
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def ten_databases(pg_cluster):
    names = [unique_name("fleet") for _ in range(10)]
    for name in names:
        pg_cluster.createdb(name)
        fill_shop(pg_cluster, name, rows=50)
    yield names
    for name in names:
        pg_cluster.dropdb(name)


def test_three_workers_share_ten_targets_through_redis(tmp_path, pg_cluster, source_db, s3_settings, redis_url,
                                                       ten_databases):
    catalog = tmp_path / "catalog.db"
    env = {**os.environ, "FLASK_APP": "app.py", "FLASK_SKIP_DOTENV": "1", "SECRET_KEY": "scale-test",
           "BACKUP_DATABASE_URL": pg_cluster.url(source_db), "APP_ENCRYPTION_KEY": new_key(),
           "CATALOG_DATABASE_URL": f"sqlite:///{catalog}", "BACKUP_DIR": str(tmp_path / "backups"),
           "REDIS_URL": redis_url, **s3_settings}
    app = LiveApp(env, tmp_path).start()
    more_workers = [app._spawn(f"worker{n}", str(BIN / "flask"), "worker", "--workers", "1") for n in (2, 3)]
    try:
        for name in ten_databases:
            app.flask("targets", "add", name, "--url", pg_cluster.url(name))
        token = app.flask("users", "token", EMAIL).strip()

        job_ids = [app.api("POST", "/api/backups", token, {"database": name})["job_id"] for name in ten_databases]
        wait_until(lambda: all(app.api("GET", f"/api/jobs/{j}", token)["status"] in ("completed", "failed")
                               for j in job_ids), 120, "ten backups")
        jobs = [app.api("GET", f"/api/jobs/{j}", token) for j in job_ids]
        backups = app.api("GET", "/api/backups", token)
    finally:
        for process in more_workers:
            process.terminate()
            process.wait(timeout=30)
        app.stop()

    assert [j["status"] for j in jobs] == ["completed"] * 10, [j["error"] for j in jobs]
    assert sorted(b["database"] for b in backups) == sorted(ten_databases), "one backup per target, none twice"
    assert all(b["status"] == "completed" for b in backups)
    with sqlite3.connect(catalog) as db:
        workers = {row[0] for row in db.execute("SELECT worker FROM jobs")}
    assert len(workers) >= 2, f"the jobs were shared: {workers}"
