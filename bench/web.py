"""Case 8: the backups page and `GET /api/backups` under gunicorn, with a large catalog.

The catalog is filled with SQLAlchemy bulk inserts, gunicorn serves the app as `make run`
does, and a second process (bench.loadgen) loads it over loopback. Whatever the app does
not offer yet (login, API tokens, the API itself) is detected and reported as n/a.
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

from backup_app import create_app
from backup_app.extensions import db
from backup_app.localservers import free_port, port_in_use, wait_until
from backup_app.models import COMPLETED, FAILED, LOCAL, PRESENT, S3, Backup, BackupCopy, new_id, utcnow
from backup_app.services.backups import make_filename

from .appcli import PROJECT, AppCli
from .measure import BenchError, run

DATABASES = ("shop", "crm", "billing", "analytics", "auth")
BATCH = 5_000
USER = "bench@example.com"
GUNICORN = str(Path(sys.executable).parent / "gunicorn")


class Unavailable(Exception):
    """The app does not offer what this measurement needs (yet); the message says what."""


def catalog_row(i: int, now) -> tuple[dict, list[dict]]:
    """The i-th newest backup (15 minutes apart; every 50th failed) and its copies."""
    backup_id, database = new_id(), DATABASES[i % len(DATABASES)]
    created = now - timedelta(minutes=15 * i)
    filename = make_filename(database, created, backup_id, "custom")
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
    app = create_app({"SQLALCHEMY_DATABASE_URI": settings["CATALOG_DATABASE_URL"],
                      "BACKUP_DIR": settings["BACKUP_DIR"]})
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
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env, self.log = env, log
        self.process = None

    def __enter__(self) -> "Gunicorn":
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [GUNICORN, "--bind", f"127.0.0.1:{self.port}", "--workers", "2", "--threads", "4",
                 "app:app"], env=self.env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        wait_until(lambda: self.process.poll() is not None or port_in_use(self.port), 60, "gunicorn")
        if self.process.poll() is not None:
            raise BenchError(f"gunicorn exited; see {self.log}")
        return self

    def __exit__(self, *exc) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


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
        self.user_made = False

    def make_user(self) -> None:
        if not self.user_made:
            if not self.cli.offers("users", "create"):
                raise Unavailable("no `flask users create` yet")
            self.cli.run("users", "create", USER, "--password-stdin", stdin=self.password + "\n")
            self.user_made = True

    def page_headers(self) -> dict[str, str]:
        """No headers while `/` is open; a session cookie once it needs a login."""
        status = status_of(self.base + "/")
        if status == 200:
            return {}
        self.make_user()
        return {"Cookie": self.log_in()}

    def log_in(self) -> str:
        """Sign in through the login form `/` redirects to; return the Cookie header."""
        jar = CookieJar()
        opener = build_opener(HTTPCookieProcessor(jar))
        with opener.open(self.base + "/", timeout=60) as page:
            login_url, html = page.url, page.read().decode()
        reader = FormReader()
        reader.feed(html)
        form = next((f for f in reader.forms if any(i.get("type") == "password" for i in f["inputs"])), None)
        if form is None:
            raise Unavailable(f"`/` needs a login but {login_url} shows no password form")
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
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        if status_of(self.base + "/", {"Cookie": cookie}) != 200:
            raise Unavailable(f"signing in through {login_url} did not open `/`")
        return cookie

    def api_headers(self) -> dict[str, str]:
        """A Bearer token from `flask users token`, once the API exists."""
        if not self.cli.offers("users", "token"):
            raise Unavailable("no `flask users token` yet")
        self.make_user()
        token = self.cli.run("users", "token", USER).stdout.split()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        status = status_of(self.base + "/api/backups", headers)
        if status != 200:
            raise Unavailable(f"GET /api/backups answered {status}")
        return headers


def load(url: str, headers: dict[str, str], seconds: float, connections: int) -> dict:
    """Run bench.loadgen in its own process against `url`."""
    args = [sys.executable, "-m", "bench.loadgen", url, f"--seconds={seconds}",
            f"--connections={connections}", *(f"--header={k}: {v}" for k, v in headers.items())]
    return json.loads(run(args, None, cwd=PROJECT).stdout)


def web_cases(cli: AppCli, workdir: Path, rows: int, seconds: float, connections: int, repeat: int,
              log) -> dict:
    """Fill the catalog, serve it, and load `/` and `/api/backups` in turn, `repeat` times each.

    Returns {"page": …, "api": …}, each {"url", "runs": [loadgen results]} or {"unavailable": why}.
    """
    cli.run("db", "upgrade")
    fill_catalog(cli.env, rows)
    log(f"catalog filled with {rows} backups")
    results, urls = {}, {}
    with Gunicorn(cli.env, workdir / "gunicorn.log") as server:
        access = Access(server.base, cli)
        for key, path, headers_of in (("page", "/", access.page_headers),
                                      ("api", "/api/backups", access.api_headers)):
            try:
                urls[key] = (server.base + path, headers_of())
                results[key] = {"path": path, "runs": []}
            except Unavailable as exc:
                results[key] = {"path": path, "unavailable": str(exc)}
        for round_ in range(repeat):
            for key, (url, headers) in urls.items():
                outcome = load(url, headers, seconds, connections)
                results[key]["runs"].append(outcome)
                log(f"round {round_ + 1}/{repeat} GET {results[key]['path']}: "
                    f"{outcome['requests']} requests, {outcome['errors']} errors")
    return results
