"""Case 8: the backups page and `GET /api/backups` under gunicorn, with a large catalog.

The catalog is filled with SQLAlchemy bulk inserts, gunicorn serves the app as `make run`
does, and a second process (bench.loadgen) loads it over loopback: the page with a signed-in
session (through the login form), the API with a token from `flask users token`. Only 200
answers count; anything else (a redirect to /login, an error) is counted as an error.
"""
import json
import secrets
import signal
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, Request, build_opener

from sqlalchemy import insert

from backup_app.extensions import db
from backup_app.models import COMPLETED, FAILED, LOCAL, PRESENT, S3, Backup, BackupCopy, new_id, utcnow
from backup_app.services.backups.create import make_filename
from devtools.localservers import http_answers, release_port, reserve_port, wait_until

from .appcli import PROJECT, AppCli, app_in_process
from .measure import BenchError, run

DATABASES = ("shop", "crm", "billing", "analytics", "auth")
BATCH = 5_000
USER = "bench@example.com"
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def catalog_row(i: int, now) -> tuple[dict, list[dict]]:
    """The i-th newest backup (15 minutes apart; every 50th failed) and its copies."""
    backup_id, database = new_id(), DATABASES[i % len(DATABASES)]
    created = now - timedelta(minutes=15 * i)
    filename = make_filename(database, created, backup_id, ".dump")
    backup = {"id": backup_id, "filename": filename, "database": database, "format": "custom",
              "created_at": created, "completed_at": created + timedelta(seconds=40)}
    if i % 50 == 49:
        return {**backup, "status": FAILED, "error": "pg_dump failed"}, []
    size = 50_000_000 + i
    backup.update(status=COMPLETED, size_bytes=size, sha256="ab" * 32, storage_url=f"s3://backups/{filename}")
    copies = [{"backup_id": backup_id, "location": LOCAL, "uri": f"/backups/{filename}", "status": PRESENT,
               "size_bytes": size},
              {"backup_id": backup_id, "location": S3, "uri": backup["storage_url"], "status": PRESENT,
               "size_bytes": size}]
    return backup, copies


def fill_catalog(settings: dict[str, str], rows: int) -> None:
    """Insert `rows` backups with their copies, in batches of bulk inserts."""
    app = app_in_process(settings)
    now = utcnow()
    with app.app_context():
        for first in range(0, rows, BATCH):
            made = [catalog_row(i, now) for i in range(first, min(first + BATCH, rows))]
            db.session.execute(insert(Backup), [backup for backup, _ in made])
            db.session.execute(insert(BackupCopy), [copy for _, copies in made for copy in copies])
        db.session.commit()


class Gunicorn:
    """The app served by gunicorn as `make run` serves it (2 workers × 4 threads)."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = reserve_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env, self.log = env, log
        self.process = None

    def __enter__(self) -> "Gunicorn":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [GUNICORN, "--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--threads", "4",
                 "app:app"], env=self.env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        wait_until(lambda: self.process.poll() is not None or http_answers(f"{self.base}/healthz"), 60, "gunicorn")
        if self.process.poll() is not None:
            raise BenchError(f"gunicorn exited; see {self.log}")
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)
        release_port(self.port)


class NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    """The status of one GET, redirects not followed."""
    try:
        with build_opener(NoRedirect()).open(Request(url, headers=headers or {}), timeout=300) as resp:
            return resp.status
    except HTTPError as exc:
        exc.close()
        return exc.code
    except URLError as exc:
        raise BenchError(f"GET {url}: {exc.reason}") from exc


class FormReader(HTMLParser):
    """Collects each form's action and inputs."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append(attrs)


class Access:
    """Credentials for the page and the API, made through the app's own commands."""

    def __init__(self, base: str, cli: AppCli):
        self.base, self.cli = base, cli
        self.password = secrets.token_urlsafe(16)
        self.cli.run("users", "create", USER, "--password-stdin", stdin=self.password + "\n")

    def page_headers(self) -> dict[str, str]:
        """Sign in through the login form `/` redirects to; the session's Cookie header."""
        jar = CookieJar()
        opener = build_opener(HTTPCookieProcessor(jar))
        with opener.open(self.base + "/", timeout=60) as page:
            login_url, html = page.url, page.read().decode()
        reader = FormReader()
        reader.feed(html)
        form = next((f for f in reader.forms if any(i.get("type") == "password" for i in f["inputs"])), None)
        if form is None:
            raise BenchError(f"`/` shows no password form at {login_url}")
        fields = {}
        for field in form["inputs"]:
            name, kind = field.get("name"), field.get("type", "text")
            if not name:
                continue
            if kind == "hidden":
                fields[name] = field.get("value", "")
            elif kind == "password":
                fields[name] = self.password
            elif kind in ("email", "text"):
                fields[name] = USER
        opener.open(urljoin(login_url, form["action"]), urlencode(fields).encode(), timeout=60).close()
        headers = {"Cookie": "; ".join(f"{c.name}={c.value}" for c in jar)}
        expect_ok(self.base + "/", headers)
        return headers

    def api_headers(self) -> dict[str, str]:
        """A Bearer token from `flask users token`."""
        token = self.cli.run("users", "token", USER).stdout.split()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        expect_ok(self.base + "/api/backups", headers)
        return headers


def expect_ok(url: str, headers: dict[str, str]) -> None:
    """The load must measure the real answer: a 200, not a redirect to /login or an error."""
    status = status_of(url, headers)
    if status != 200:
        raise BenchError(f"GET {url} answered {status} with the benchmark's credentials")


def load(url: str, headers: dict[str, str], seconds: float, connections: int) -> dict:
    """Run bench.loadgen in its own process against `url`."""
    args = [sys.executable, "-m", "bench.loadgen", url, f"--seconds={seconds}",
            f"--connections={connections}", *(f"--header={k}: {v}" for k, v in headers.items())]
    return json.loads(run(args, None, cwd=PROJECT).stdout)


def web_cases(cli: AppCli, workdir: Path, rows: int, seconds: float, connections: int, repeat: int,
              log) -> dict:
    """Fill the catalog, serve it, and load `/` and `/api/backups` in turn, `repeat` times each.

    Returns {"page": …, "api": …}, each {"path", "runs": [loadgen results]}.
    """
    cli.run("db", "upgrade")
    fill_catalog(cli.settings, rows)
    log(f"catalog filled with {rows} backups")
    with Gunicorn(cli.env, workdir / "gunicorn.log") as server:
        access = Access(server.base, cli)
        urls = {"page": ("/", access.page_headers()), "api": ("/api/backups", access.api_headers())}
        results = {key: {"path": path, "runs": []} for key, (path, _) in urls.items()}
        for round_ in range(repeat):
            for key, (path, headers) in urls.items():
                outcome = load(server.base + path, headers, seconds, connections)
                results[key]["runs"].append(outcome)
                log(f"round {round_ + 1}/{repeat} GET {path}: "
                    f"{outcome['requests']} requests, {outcome['errors']} errors")
    return results
