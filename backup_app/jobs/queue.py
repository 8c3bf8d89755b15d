"""The job queue: Huey (SQLite in the instance folder, or Redis when REDIS_URL is set), and the
one task it runs for every job, `run_job(job_id, target_url)`.
"""

from pathlib import Path

from flask import Flask, current_app
from huey import Huey, RedisHuey, SqliteHuey

from backup_app.core.logs import job_context
from backup_app.jobs.runners import run_job


class JobQueue:
    """The app's Huey instance and the task it runs for every job: `run_job(job_id, target_url)`."""

    def __init__(self, app: Flask):
        self.app = app
        self.huey = make_huey(app)
        self._task = self.huey.task(name="run_job")(self._run_in_app)

    def _run_in_app(self, job_id: str, target_url: str | None = None) -> None:
        with self.app.app_context(), job_context(job_id):
            run_job(job_id, target_url)

    def submit(self, job_id: str, target_url: str | None = None) -> None:
        self._task(job_id, target_url)


def make_huey(app: Flask) -> Huey:
    """RedisHuey when REDIS_URL is set, else SqliteHuey in the instance folder."""
    config = app.config
    common = {"name": "backup_app", "results": False, "immediate": config.get("HUEY_IMMEDIATE", False)}
    if config.get("REDIS_URL"):
        return RedisHuey(url=config["REDIS_URL"], **common)
    path = config.get("HUEY_SQLITE_PATH") or str(Path(app.instance_path) / "huey.db")
    return SqliteHuey(filename=path, **common)


def init_app(app: Flask) -> None:
    app.extensions["job_queue"] = JobQueue(app)


def job_queue() -> JobQueue:
    return current_app.extensions["job_queue"]
