"""The app as `make run` serves it (gunicorn + `flask worker`, configured by environment
variables) on the session's PostgreSQL and S3, and Debian's Chromium driven by Playwright."""
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from backup_app.localservers import free_port, wait_until
from tests.web_helpers import EMAIL, PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
BIN = Path(sys.executable).parent


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except OSError:
        return False
    return True


class LiveApp:
    """gunicorn and a worker in their own processes, sharing one catalog and queue."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env = env
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def flask(self, *args: str, input: str | None = None) -> None:
        subprocess.run([str(BIN / "flask"), *args], env=self.env, cwd=ROOT, check=True, input=input,
                       text=True, capture_output=True)

    def spawn(self, name: str, *args: str) -> None:
        with open(self.logs / f"{name}.log", "wb") as log:
            self.processes.append(subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=log,
                                                   stderr=subprocess.STDOUT))

    def start(self) -> "LiveApp":
        self.flask("db", "upgrade")
        self.flask("storage", "init")
        self.flask("users", "create", EMAIL, "--password-stdin", input=PASSWORD + "\n")
        self.spawn("worker", str(BIN / "flask"), "worker", "--workers", "1")
        self.spawn("web", str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--threads", "4", "app:app")
        wait_until(lambda: answers(f"{self.url}/healthz"), 30, "gunicorn")
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)


@pytest.fixture
def live_app(tmp_path, pg_cluster, source_db, s3_settings):
    env = {**os.environ, "FLASK_APP": "app.py", "FLASK_SKIP_DOTENV": "1", "SECRET_KEY": "browser-test",
           "BACKUP_DATABASE_URL": pg_cluster.url(source_db),
           "CATALOG_DATABASE_URL": f"sqlite:///{tmp_path / 'catalog.db'}",
           "BACKUP_DIR": str(tmp_path / "backups"), "HUEY_SQLITE_PATH": str(tmp_path / "huey.db"),
           **s3_settings}
    app = LiveApp(env, tmp_path).start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def screenshot(page):
    """screenshot(name): save the whole page as test-output/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
    return take
