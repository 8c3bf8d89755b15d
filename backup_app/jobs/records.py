"""Job rows: reading them, and writing a running job's phase, bytes, log, heartbeat and end,
each in its own short transaction, by the catalog database's clock.
"""
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from flask import current_app
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from backup_app.adapters.processes import JobProcesses, tracking
from backup_app.errors import JobNotFound
from backup_app.extensions import db
from backup_app.models import (
    ACTIVE_JOB_STATUSES,
    QUEUED,
    RUNNING,
    Job,
    utcnow,
)
from backup_app.services import audit

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.5  # seconds between two writes of a job's bytes done


# "Now" by the catalog database's clock, the one clock every worker on every machine shares.
CATALOG_NOW = {"sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')", "postgresql": "SELECT clock_timestamp()"}


def get_job(session: Session, job_id: str) -> Job:
    """The job with this id, or JobNotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def jobs_query(kind: str | None = None, status: str | None = None, database: str | None = None) -> Select:
    """Jobs, newest first, of one kind, status and target database where given."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id)
    for column, value in ((Job.kind, kind), (Job.status, status), (Job.database, database)):
        if value is not None:
            query = query.where(column == value)
    return query


def active_jobs(session: Session, database: str | None = None) -> list[Job]:
    """The queued and running jobs (of one target database where given), newest first."""
    query = jobs_query(database=database).where(Job.status.in_(ACTIVE_JOB_STATUSES))
    return list(session.scalars(query))


def job_databases(session: Session) -> list[str]:
    """Every target database some job worked on."""
    return list(session.scalars(select(Job.database).distinct().order_by(Job.database)))


def jobs_of_backup(session: Session, backup_id: str) -> list[Job]:
    """The jobs that made or restored a backup, oldest first (its job log)."""
    return list(session.scalars(select(Job).where(Job.backup_id == backup_id).order_by(Job.created_at)))


def log_line(message: str, at: datetime | None = None) -> str:
    return f"{(at or utcnow()):%Y-%m-%d %H:%M:%S}Z  {message}\n"


def catalog_now() -> datetime:
    """Now by the catalog database's clock: heartbeats are written and judged by it, so a
    machine whose clock is off never takes another machine's live job for a dead one."""
    with db.engine.connect() as connection:
        value = connection.exec_driver_sql(CATALOG_NOW[db.engine.dialect.name]).scalar()
    if isinstance(value, str):  # SQLite: UTC as text
        value = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def record(job_id: str, message: str | None = None, *, if_status: str | None = None, **values) -> bool:
    """Update a job's row in its own short transaction, apart from the service's session.

    With `if_status`, only while the job has that status: a job another worker marked
    interrupted is never overwritten as completed. False if nothing was updated.
    """
    if message:
        values["log"] = Job.log + log_line(message)
        log.info("%s", message)
    statement = update(Job).where(Job.id == job_id)
    if if_status:
        statement = statement.where(Job.status == if_status)
    with db.engine.begin() as connection:
        return connection.execute(statement.values(**values)).rowcount == 1


class ProgressRecorder:
    """The services' progress callback: writes bytes done at most every PROGRESS_INTERVAL,
    and passes every call on to `also` (the CLI's progress line). `begin` starts a phase that
    moves a known number of bytes; the heartbeat and the job's end write `unwritten()`."""

    def __init__(self, job_id: str, also: Callable[[int], None] | None = None):
        self.job_id = job_id
        self.also = also
        self.phase: str | None = None
        self._last = 0.0
        self._done = self._written = 0

    def __call__(self, nbytes: int) -> None:
        if self.also:
            self.also(nbytes)
        self._done = nbytes
        now = time.monotonic()
        if now - self._last >= PROGRESS_INTERVAL:
            self._last, self._written = now, nbytes
            record(self.job_id, bytes_done=nbytes)

    def begin(self, phase: str, total: int | None, message: str | None = None) -> None:
        """Enter `phase`, which is to move `total` bytes (None: unknown): bytes done start again at 0.
        The phase it is in already only logs `message`."""
        if phase == self.phase:
            if message:
                record(self.job_id, message)
            return
        self.phase, self._done, self._written, self._last = phase, 0, 0, 0.0
        record(self.job_id, message, phase=phase, bytes_done=0, bytes_total=total, phase_started_at=utcnow())

    def expect(self, total: int | None) -> None:
        """The bytes the current phase is to move, once they are known."""
        record(self.job_id, bytes_total=total)

    def settle(self, nbytes: int) -> None:
        """The phase moved `nbytes` in all (now known): done and total both."""
        self._done = self._written = nbytes
        record(self.job_id, bytes_done=nbytes, bytes_total=nbytes)

    def unwritten(self) -> dict:
        """The bytes done not written yet (taken as written now), as values for the job's row."""
        done = self._done
        if done == self._written:
            return {}
        self._written = done
        return {"bytes_done": done}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(job_id: str) -> bool:
    """Move a queued job to running; False if it is not queued (already run, or gone)."""
    return record(job_id, if_status=QUEUED, status=RUNNING, phase="starting", started_at=utcnow(),
                  heartbeat_at=catalog_now(), worker=worker_name())


class Watch:
    """What the heartbeat thread watches besides the clock: the job's client programs, why it
    stopped them (None while it has not), and the progress not written yet (a phase stuck on
    a lock still shows the bytes it moved)."""

    def __init__(self, progress: ProgressRecorder | None = None):
        self.processes = JobProcesses()
        self.stalled: str | None = None
        self.progress = progress


class StallClock:
    """Says when the watched programs have moved no bytes for `limit` seconds (0: never)."""

    def __init__(self, limit: float):
        self.limit = limit
        self._moved: tuple | None = None
        self._since = time.monotonic()

    def stalled(self, moved: tuple | None) -> bool:
        """Given what the programs have moved so far (None: none runs), whether they stalled."""
        now = time.monotonic()
        if moved is None or moved != self._moved:
            self._moved, self._since = moved, now
            return False
        return self.limit > 0 and now - self._since >= self.limit


@contextmanager
def heartbeat(job_id: str, watch: Watch | None = None) -> Iterator[Watch]:
    """Write the job's heartbeat every JOB_HEARTBEAT_SECONDS, from a thread, while the block runs.

    The same thread is the job's watchdog: the client programs the block starts (see
    adapters/processes.py) are killed once they have moved no bytes for JOB_STALL_SECONDS,
    and `watch` (the one yielded) says why.
    """
    app = current_app._get_current_object()
    watch, stopped = watch or Watch(), threading.Event()

    def beat() -> None:
        with app.app_context():
            clock = StallClock(app.config["JOB_STALL_SECONDS"])
            while not stopped.wait(app.config["JOB_HEARTBEAT_SECONDS"]):
                try:
                    record(job_id, if_status=RUNNING, heartbeat_at=catalog_now(),
                           **(watch.progress.unwritten() if watch.progress else {}))
                except Exception:  # a busy or unreachable catalog: the next beat tries again
                    log.warning("could not write the heartbeat of job %s", job_id, exc_info=True)
                if watch.stalled is None and clock.stalled(watch.processes.bytes_moved()):
                    watch.stalled = stall_reason(job_id, clock.limit, watch.processes.stop())
                    log.warning("job %s: %s", job_id, watch.stalled)
    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        with tracking(watch.processes):
            yield watch
    finally:
        stopped.set()
        thread.join()


def stall_reason(job_id: str, seconds: float, programs: list[str]) -> str:
    """Why a job was stopped by its watchdog, for its error."""
    try:
        with db.engine.connect() as connection:
            phase, server = connection.execute(select(Job.phase, Job.server).where(Job.id == job_id)).one()
    except Exception:  # a busy or unreachable catalog: say it without the phase
        log.warning("could not read the phase of job %s", job_id, exc_info=True)
        phase, server = "running", None
    names, verb = ", ".join(programs) or "its programs", "were" if len(programs) > 1 else "was"
    stopped = f"{names} moved no bytes and {verb} stopped"
    where = f": the server at {server} stopped answering ({stopped})" if server else f" ({stopped})"
    return f"no progress for {seconds} s while {phase}{where}"


def finish(job_id: str, message: str, **values) -> None:
    """End a running job; a job marked interrupted meanwhile (its worker taken for dead) stays so.
    A failed job's audit event (of the request that queued it) says so."""
    if not record(job_id, message, if_status=RUNNING, finished_at=utcnow(), **values):
        log.warning("job %s was no longer running (marked interrupted?); not recorded: %s", job_id, message)
    elif values.get("error"):
        audit.job_failed(job_id, values["error"])
