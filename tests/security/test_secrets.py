"""A target's password never shows: not on any process's command line while pg_dump runs (read
from /proc), not in the web or worker logs, the pages, the API, the metrics, the job rows or the
catalog file (run as `make run` does: gunicorn and a worker process, JSON logs). And no secret of
the settings or the targets (passwords, S3 and encryption keys, notification tokens) is on the
pages an admin reads most."""
import json
import os
import secrets
import threading
from pathlib import Path

import pytest

from backup_app.extensions import db
from backup_app.models import Job
from devtools.localservers import reserve_port, wait_until
from tests.helpers import new_key
from tests.web_helpers import EMAIL, LiveApp, TableLock, add_user, live_env, sign_in, submit, text

pytestmark = pytest.mark.integration


class CommandLineWatcher:
    """Reads every process's command line from /proc, over and over, in a thread."""

    def __init__(self, secret: str):
        self.secret = secret.encode()
        self.leaks: list[str] = []
        self.pg_dump_pids: set[int] = set()  # of running dumps seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:  # the process ended meanwhile
                    continue
                if self.secret in cmdline:
                    self.leaks.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
                args = cmdline.split(b"\0")
                if os.path.basename(args[0]) == b"pg_dump" and any(a.startswith(b"--format=") for a in args):
                    self.pg_dump_pids.add(int(pid))  # a dump, not a `pg_dump --version` probe
            self._stop.wait(0.02)

    def __enter__(self) -> "CommandLineWatcher":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def secret_role(pg_cluster, source_db):
    """A superuser role with a distinctive password; its objects in `source_db` go when the test ends."""
    role, password = f"sec{secrets.token_hex(4)}", f"pw-{secrets.token_hex(16)}"
    pg_cluster.psql(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    yield role, password
    pg_cluster.psql(f"DROP OWNED BY {role}", source_db)
    pg_cluster.psql(f"DROP ROLE {role}")


@pytest.fixture
def secret_app(tmp_path, make_app, pg_cluster, source_db, other_db, s3_settings, secret_role, catalog_url):
    """gunicorn + worker backing up `source_db` through a URL with the role's password, and a stored
    target `vault` (password encrypted in the catalog) for `other_db`."""
    role, password = secret_role
    key = new_key()
    env = live_env(tmp_path, catalog_url, BACKUP_DATABASE_URL=pg_cluster.url(source_db, user=role, password=password),
                   APP_ENCRYPTION_KEY=key, LOG_FORMAT="json", METRICS_TOKEN="metrics-token", **s3_settings)
    live = LiveApp(env, tmp_path).start()
    # The same catalog and folder, in this process: the pages through the test client.
    app = make_app(**{name: env[name] for name in ("BACKUP_DATABASE_URL", "HUEY_SQLITE_PATH", "APP_ENCRYPTION_KEY",
                                                   "METRICS_TOKEN", *s3_settings)})
    # Added in-process: `flask targets add --url …` would put the password on this test's own command line.
    result = app.test_cli_runner().invoke(args=["targets", "add", "vault", "--url",
                                                pg_cluster.url(other_db, user=role, password=password)])
    assert result.exit_code == 0, result.output
    yield live, app, role, password
    live.stop()


def wait_for_job(live, token: str, job_id: str) -> dict:
    wait_until(lambda: live.api("GET", f"/api/jobs/{job_id}", token)["status"] not in ("queued", "running"),
               60, f"job {job_id}")
    job = live.api("GET", f"/api/jobs/{job_id}", token)
    assert job["status"] == "completed", job
    return job


def test_the_password_never_shows(secret_app, pg_cluster, source_db, other_db, tmp_path):
    live, app, role, password = secret_app
    token = live.flask("users", "token", EMAIL).strip()
    responses = []

    with CommandLineWatcher(password) as watcher:
        locks = [TableLock(pg_cluster, source_db, "orders"), TableLock(pg_cluster, other_db, "orders")]
        try:
            first = live.api("POST", "/api/backups", token)["job_id"]
            second = live.api("POST", "/api/backups", token, {"database": "vault"})["job_id"]
            wait_until(lambda: len(watcher.pg_dump_pids) == 1, 30, "the first pg_dump")
            locks[0].release()  # the first dump ends; the worker takes the second, which waits on its lock
            wait_until(lambda: len(watcher.pg_dump_pids) == 2, 30, "the second pg_dump")
        finally:
            for lock in locks:
                lock.release()
        jobs = [wait_for_job(live, token, first), wait_for_job(live, token, second)]
        restore_url = pg_cluster.url(source_db, user=role, password=password)
        restore = live.api("POST", f"/api/backups/{jobs[0]['backup_id']}/restore", token,
                           {"confirm": source_db, "target_url": restore_url})["job_id"]
        jobs.append(wait_for_job(live, token, restore))
    assert watcher.leaks == []

    responses += [json.dumps(job) for job in jobs]
    responses.append(json.dumps(live.api("GET", "/api/backups", token)))
    responses += [json.dumps(live.api("GET", f"/api/backups/{job['backup_id']}", token)) for job in jobs]
    client = app.test_client()
    assert sign_in(client).status_code == 302
    for url in ["/", "/jobs/", "/backups/new", *[f"/jobs/{job['id']}/row" for job in jobs],
                *[f"/backups/{job['backup_id']}{page}" for job in jobs for page in ("", "/restore")]]:
        response = client.get(url)
        assert response.status_code == 200, url
        responses.append(text(response))
    responses.append(text(client.get("/metrics", headers={"Authorization": "Bearer metrics-token"})))
    responses.append(text(client.get("/readyz")))
    responses.append(app.test_cli_runner().invoke(args=["targets", "list", "--json"]).output)
    with app.app_context():
        responses += [f"{row.target} {row.log} {row.result} {row.error}" for row in db.session.query(Job)]
    assert all(password not in response for response in responses)
    assert password.encode() not in (tmp_path / "catalog.db").read_bytes()

    for log in ("web.log", "worker.log"):
        assert password not in (tmp_path / log).read_text(), log
    worker_lines = [json.loads(line) for line in (tmp_path / "worker.log").read_text().splitlines()]
    for job in jobs:
        job_lines = [line for line in worker_lines if line["job_id"] == job["id"]]
        assert any(line["message"].startswith(("dumping ", "restoring into ")) for line in job_lines), job
        assert any(line["message"] == job["result"] for line in job_lines), job



def test_no_secret_on_the_pages_an_admin_reads(make_app):
    """The audit log, the targets list, each edit page and the dashboard, after a target with a
    password and a notification URL was added, its connection tested and a backup of it failed,
    and a sign-in with a wrong password: none shows a password, a key or a notification token."""
    db_port = reserve_port()  # nothing listens: the test and the backup fail
    target_pw, env_pw, s3_key, typo = (f"{what}-{secrets.token_hex(8)}" for what in ("crm-pw", "env-pw", "s3", "typo"))
    target_hook, global_hook = f"json://hooks.example/crm?token=crm-{secrets.token_hex(8)}", \
        f"json://hooks.example/all?token=all-{secrets.token_hex(8)}"
    app = make_app(BACKUP_DATABASE_URL=f"postgresql://app:{env_pw}@127.0.0.1:{db_port}/shop",
                   MINIO_ENDPOINT=f"127.0.0.1:{reserve_port()}", MINIO_ACCESS_KEY="backup-app", MINIO_SECRET_KEY=s3_key,
                   NOTIFY_URLS=global_hook, APP_ENCRYPTION_KEY=new_key(), SECRET_KEY=secrets.token_hex(16))
    hidden = {"target password": target_pw, "BACKUP_DATABASE_URL's password": env_pw, "MINIO_SECRET_KEY": s3_key,
              "a target's notification token": target_hook.split("=")[1],
              "NOTIFY_URLS' token": global_hook.split("=")[1], "APP_ENCRYPTION_KEY": app.config["APP_ENCRYPTION_KEY"],
              "SECRET_KEY": app.config["SECRET_KEY"], "a mistyped sign-in password": typo}
    add_user(app)
    client = app.test_client()
    assert sign_in(client, password=typo).status_code == 401
    assert sign_in(client).status_code == 302
    added = submit(client, "/targets/new", {
        "name": "crm", "host": "127.0.0.1", "port": str(db_port), "user": "app", "dbname": "crm",
        "password": target_pw, "timezone": "UTC", "schedule_enabled": "y", "keep_days": "7", "keep_last": "2",
        "gfs_daily": "0", "gfs_weekly": "0", "gfs_monthly": "0", "format": "custom", "codec": "gzip",
        "notify": target_hook})
    assert added.status_code == 302, text(added)
    tested = submit(client, "/targets/crm/test", form_url="/targets/", follow_redirects=True)
    assert "Connection refused" in text(tested)
    submit(client, "/targets/crm/run", form_url="/targets/")
    with app.app_context():
        assert [job.status for job in db.session.query(Job)] == ["failed"], "a failed backup to be shown"

    pages = {url: client.get(url) for url in ("/audit", "/targets/", "/targets/crm/edit", "/targets/shop/edit",
                                              "/dashboard")}

    assert {url: page.status_code for url, page in pages.items()} == dict.fromkeys(pages, 200)
    assert all(action in text(pages["/audit"]) for action in ("sign-in-failed", "targets-add", "create"))
    shown = {url: [name for name, secret in hidden.items() if secret in text(page)] for url, page in pages.items()}
    assert shown == dict.fromkeys(pages, [])
