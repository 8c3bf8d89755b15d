"""The job queue: Huey (SQLite in the instance folder, or Redis when REDIS_URL is set), made the
first time it is needed, with the one task it runs for every job, `run_job(job_id, target_url)`,
and the scheduler's periodic tick. A command that queues nothing never imports Huey."""
import threading
from collections import Counter
from pathlib import Path

from flask import Flask, current_app
from sqlalchemy import select

from backup_app.core.logs import job_context
from backup_app.extensions import db
from backup_app.jobs.runners import run_job
from backup_app.models import Job

_making = threading.Lock()

# Seconds a job waits, back in the queue, when its server already has its share of the worker's threads.
SHARE_RETRY_SECONDS = 2


class ServerShare:
    """How many of a worker's threads run jobs on each PostgreSQL server: at most all but one
    (at least one), so jobs hanging on one silent server never hold every thread and the
    other servers' jobs still start."""

    def __init__(self, threads: int):
        self.limit = max(1, threads - 1)
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, server: str) -> bool:
        """Count one more job on `server`; False (nothing counted) when it has its share already."""
        with self._lock:
            if self._running[server] >= self.limit:
                return False
            self._running[server] += 1
            return True

    def give_back(self, server: str) -> None:
        with self._lock:
            self._running[server] -= 1


class JobQueue:
    """The app's Huey instance and the task it runs for every job: `run_job(job_id, target_url)`."""

    def __init__(self, app: Flask):
        from backup_app.jobs.scheduler import register_tick

        self.app = app
        self.huey = make_huey(app)
        self.share: ServerShare | None = None  # set by the worker, which knows its threads
        self._task = self.huey.task(name="run_job")(self._run_in_app)
        register_tick(self.huey, app)

    def _run_in_app(self, job_id: str, target_url: str | None = None) -> None:
        from huey.exceptions import RetryTask

        with self.app.app_context(), job_context(job_id):
            server = self._server_of(job_id)
            if server is None:
                run_job(job_id, target_url)
                return
            if not self.share.take(server):  # back in the queue: this thread runs another server's job
                raise RetryTask(delay=SHARE_RETRY_SECONDS)
            try:
                run_job(job_id, target_url)
            finally:
                self.share.give_back(server)

    def _server_of(self, job_id: str) -> str | None:
        """The server whose share of the worker's threads the job takes (None: it takes none)."""
        if self.share is None:  # not run by a worker
            return None
        server = db.session.scalar(select(Job.server).where(Job.id == job_id))
        db.session.commit()  # no catalog transaction stays open while the job runs
        return server

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
