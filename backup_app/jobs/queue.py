"""The job queue: Huey (SQLite in the instance folder, or Redis when REDIS_URL is set), made the
first time it is needed, with the one task it runs for every job, `run_job(job_id, target_url)`,
and the scheduler's periodic tick. A command that queues nothing never imports Huey."""
import threading
from pathlib import Path

from flask import Flask, current_app

from backup_app.core.logs import job_context
from backup_app.jobs.runners import run_job

_making = threading.Lock()


class JobQueue:
    """The app's Huey instance and the task it runs for every job: `run_job(job_id, target_url)`."""

    def __init__(self, app: Flask):
        from backup_app.jobs.scheduler import register_tick

        self.app = app
        self.huey = make_huey(app)
        self._task = self.huey.task(name="run_job")(self._run_in_app)
        register_tick(self.huey, app)

    def _run_in_app(self, job_id: str, target_url: str | None = None) -> None:
        with self.app.app_context(), job_context(job_id):
            run_job(job_id, target_url)

    def submit(self, job_id: str, target_url: str | None = None) -> None:
        self._task(job_id, target_url)


def make_huey(app: Flask):
    """RedisHuey when REDIS_URL is set, else SqliteHuey in the instance folder."""
    from huey import RedisHuey, SqliteHuey

    config = app.config
    common = {"name": "backup_app", "results": False, "immediate": config.get("HUEY_IMMEDIATE", False)}
    if config.get("REDIS_URL"):
        return RedisHuey(url=config["REDIS_URL"], **common)
    path = config.get("HUEY_SQLITE_PATH") or str(Path(app.instance_path) / "huey.db")
    return SqliteHuey(filename=path, **common)


def job_queue(app: Flask | None = None) -> JobQueue:
    """The app's queue (the current app's by default), made on first use."""
    app = app or current_app._get_current_object()
    with _making:
        if "job_queue" not in app.extensions:
            app.extensions["job_queue"] = JobQueue(app)
    return app.extensions["job_queue"]
