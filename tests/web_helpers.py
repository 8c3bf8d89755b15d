"""Helpers for the tests of the pages, the API and the worker."""
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from backup_app import create_app, wiring
from backup_app.extensions import db
from backup_app.models import COMPLETED, LOCAL, PRESENT, S3, Backup, BackupCopy, utcnow
from backup_app.schema import upgrade_catalog_if_needed
from backup_app.services import tokens, users
from devtools.localservers import DEBIAN_PG_BIN, http_answers, reserve_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

EMAIL = "admin@example.com"
PASSWORD = "correct-horse-battery"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def add_user(app, email: str = EMAIL, password: str = PASSWORD, role: str = "admin") -> None:
    with app.app_context():
        users.create_user(db.session, email, password, app.config["PASSWORD_HASH_METHOD"], role)


def api_token(app, email: str = EMAIL, **options) -> str:
    """A new API token's secret; `options` as tokens.create_token takes them (name, role, expires_in_days)."""
    with app.app_context():
        return tokens.create_token(db.session, email, **options)[1]


def csrf_token(client, url: str) -> str:
    """The CSRF token of the form on the page at `url` (the session keeps it valid)."""
    page = client.get(url)
    match = CSRF_INPUT.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {url} ({page.status_code})"
    return match.group(1)


def submit(client, url: str, data: dict | None = None, form_url: str | None = None, **kwargs):
    """POST a form to `url` with the token from the page that shows it (`form_url`, default `url`)."""
    token = csrf_token(client, form_url or url)
    return client.post(url, data={**(data or {}), "csrf_token": token}, **kwargs)


def sign_in(client, email: str = EMAIL, password: str = PASSWORD):
    return submit(client, "/login", {"email": email, "password": password})


def text(response) -> str:
    return response.get_data(as_text=True)


def live_env(tmp_path: Path, catalog_url: str, **settings) -> dict[str, str]:
    """The environment of the app's own processes in a test (gunicorn, `flask worker`): the test's
    catalog, folder (tmp_path/backups) and SQLite queue, fast password hashes, then `settings`."""
    return {**os.environ, "FLASK_APP": "app.py", "FLASK_SKIP_DOTENV": "1", "SECRET_KEY": "live-test",
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000", "CATALOG_DATABASE_URL": catalog_url,
            "BACKUP_DIR": str(tmp_path / "backups"), "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"),
            **{name: str(value) for name, value in settings.items()}}


def add_backup(app, content: bytes = b"PGDMP fake dump", *, backup_id: str = "b1", database: str = "shop",
               s3_copy: bool = False, created_at=None) -> dict:
    """A completed backup row with its local file; returns it as the API shows it."""
    with app.app_context():
        filename = f"backup-{database}-{backup_id}.dump"
        path = str(wiring.local_storage().path(filename))
        with open(path, "wb") as out:
            out.write(content)
        backup = Backup(id=backup_id, filename=filename, database=database, status=COMPLETED,
                        size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest(),
                        created_at=created_at or utcnow(), completed_at=utcnow())
        backup.copies.append(BackupCopy(location=LOCAL, uri=path, status=PRESENT))
        if s3_copy:
            backup.storage_url = f"s3://backups/{filename}"
            backup.copies.append(BackupCopy(location=S3, uri=backup.storage_url, status=PRESENT))
        db.session.add(backup)
        db.session.commit()
        return backup.to_dict()


class LiveApp:
    """The app as `make run` serves it: gunicorn and `flask worker` in their own processes,
    configured by environment variables, sharing one catalog and one SQLite queue."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.port = reserve_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.worker: subprocess.Popen | None = None
        self.web: subprocess.Popen | None = None

    def flask(self, *args: str, input: str | None = None) -> str:
        return subprocess.run([str(BIN / "flask"), *args], env=self.env, cwd=ROOT, check=True, input=input,
                              text=True, capture_output=True).stdout

    def _spawn(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "ab") as log:
            return subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> "LiveApp":
        self.prepare()
        self.start_worker()
        return self.start_web()

    def start_web(self, *options: str) -> "LiveApp":
        """gunicorn with `options` (default: one process of 4 threads), once it answers."""
        self.web = self._spawn("web", str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
                               *(options or ("--threads", "4")), "app:app")
        wait_until(lambda: http_answers(f"{self.url}/healthz"), 30, "gunicorn")
        return self

    def prepare(self) -> None:
        """Migrate the catalog, create the buckets and the user, in this process: three `flask`
        commands would add nothing but their start-up."""
        app = create_app({"SQLALCHEMY_DATABASE_URI": self.env["CATALOG_DATABASE_URL"], "BACKUP_DIR": self.env["BACKUP_DIR"],
                          **{name: value for name, value in self.env.items() if name.startswith("MINIO_")}})
        with app.app_context():
            upgrade_catalog_if_needed()
            for store in wiring.s3_stores():
                store.ensure_bucket()
            users.create_user(db.session, EMAIL, PASSWORD, self.env.get("PASSWORD_HASH_METHOD", "scrypt"))
            db.engine.dispose()

    def start_worker(self, workers: int = 1) -> subprocess.Popen:
        self.worker = self._spawn("worker", str(BIN / "flask"), "worker", "--workers", str(workers))
        return self.worker

    def api(self, method: str, path: str, token: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        for process in (self.web, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


class TableLock:
    """Holds ACCESS EXCLUSIVE on a table in an open transaction, so a pg_dump of it waits."""

    def __init__(self, pg_cluster, dbname: str, table: str):
        self.psql = subprocess.Popen(
            [f"{DEBIAN_PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(pg_cluster.port), "-U", "postgres", "-d", dbname],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
            env={"PGPASSWORD": pg_cluster.password, "PATH": "/usr/bin:/bin"})
        self.psql.stdin.write(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE;\n")
        self.psql.stdin.flush()
        held = ("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                f"WHERE c.relname = '{table}' AND l.mode = 'AccessExclusiveLock' AND l.granted")
        wait_until(lambda: self.psql.poll() is not None or pg_cluster.psql(held, dbname) == "1", 10, "the lock")
        if self.psql.poll() is not None:
            raise RuntimeError(f"psql exited ({self.psql.returncode}) before it held the lock on {table}")

    def release(self) -> None:
        if self.psql.poll() is None:
            self.psql.stdin.write("COMMIT;\n")
            self.psql.stdin.close()
            self.psql.wait(timeout=10)
